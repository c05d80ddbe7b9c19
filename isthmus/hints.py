"""Commands as the user should type them in the hints `isthmus up` and the demo print.

After `make demo` the CLI lives in .venv/bin and is not on PATH; a hint that says `isthmus` would fail
with "command not found". So a hint names the CLI the way it resolves from the user's shell: `isthmus`
when PATH finds this very program (an activated venv, a pip install), else its path (`.venv/bin/isthmus`
from the project directory). Files are named relative to the current directory when inside it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from runtime.settings import DEFAULT_NATS_URL


def shown(path: str | Path) -> str:
    """`path` relative to the current directory when it is inside it, else absolute."""
    full = Path(os.path.abspath(path))  # not resolve(): .venv/bin/python is a symlink to name as it is
    try:
        return str(full.relative_to(Path.cwd()))
    except ValueError:
        return str(full)


def program(name: str) -> str:
    """How to run this environment's `name` (isthmus, python) from the user's shell."""
    mine = Path(sys.executable).parent / name
    found = shutil.which(name)
    if found and mine.exists() and os.path.samefile(found, mine):
        return name
    if not mine.exists():
        return name
    text = shown(mine)
    return text if "/" in text else f"./{text}"  # a bare name would be looked up on PATH


def isthmus(nats_url: str = DEFAULT_NATS_URL) -> str:
    """`.venv/bin/isthmus` (or `isthmus`), with `--nats URL` when the bus is not the default one."""
    command = program("isthmus")
    return command if nats_url == DEFAULT_NATS_URL else f"{command} --nats {nats_url}"

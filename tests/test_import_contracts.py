"""The import contracts in pyproject.toml ([tool.importlinter]) hold: the proxy's layers, and no import
cycle between sibling modules or packages (typing-only imports count). A broken contract prints the
offending import chains."""

from __future__ import annotations

import os
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_in_pyproject_are_kept(capsys):
    cwd = os.getcwd()
    os.chdir(ROOT)  # the contracts name top-level packages found from the repository root
    try:
        code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    finally:
        os.chdir(cwd)
    assert code == 0, capsys.readouterr().out

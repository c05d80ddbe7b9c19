"""Exclusive pid lock files: one `isthmus up` per state directory, one bookinfo demo per log directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


def hold(path: Path) -> IO[str] | None:
    """An exclusive lock on `path` (created with its directory, our pid written in it), held while the
    returned file stays open; None if another process holds it. The kernel drops it when we exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def holder(path: Path) -> str:
    """The pid written in a lock file, or "?" when it is empty or unreadable."""
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"

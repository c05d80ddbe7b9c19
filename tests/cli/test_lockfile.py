"""isthmus/lockfile.py: the pid lock `isthmus up` takes on its state directory and the demo on its log
directory."""

from __future__ import annotations

import os
from pathlib import Path

from isthmus.lockfile import hold, holder


def test_a_held_lock_is_refused_names_its_holder_and_is_free_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "state" / "up.lock"  # its directory is made
    first = hold(path)
    assert first is not None
    assert hold(path) is None  # flock: a second open file is refused, even in the same process
    assert holder(path) == str(os.getpid())
    first.close()
    second = hold(path)
    assert second is not None
    second.close()


def test_the_holder_of_a_missing_or_empty_lock_file_is_unknown(tmp_path: Path) -> None:
    assert holder(tmp_path / "none.lock") == "?"
    (tmp_path / "empty.lock").write_text("")
    assert holder(tmp_path / "empty.lock") == "?"

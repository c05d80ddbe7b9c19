"""isthmus/hints.py: the commands `isthmus up` and the demo print run as written in the user's shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from isthmus import hints

BIN = Path(sys.executable).parent  # the venv the tests run in, as after `make test`


@pytest.mark.skipif(not (BIN / "isthmus").exists(), reason="needs the installed `isthmus` script beside python")
def test_without_the_venv_on_path_a_hint_names_the_venvs_program_and_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(BIN.parent.parent)  # the project directory, where a newcomer types commands
    command = hints.isthmus()
    assert command == f"{BIN.parent.name}/bin/isthmus"  # `.venv/bin/isthmus`
    result = subprocess.run(f"{command} --help", shell=True, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "apply" in result.stdout
    assert hints.isthmus("nats://10.0.0.5:4222") == f"{command} --nats nats://10.0.0.5:4222"


@pytest.mark.skipif(not (BIN / "isthmus").exists(), reason="needs the installed `isthmus` script beside python")
def test_with_the_venv_activated_a_hint_says_isthmus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}/usr/bin:/bin")
    assert hints.isthmus() == "isthmus" and hints.program("python") == "python"


def test_files_are_shown_relative_to_the_current_directory_when_inside_it(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert hints.shown(tmp_path / "examples" / "a.yaml") == "examples/a.yaml"
    assert hints.shown("/etc/hosts") == "/etc/hosts"

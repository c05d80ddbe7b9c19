"""docs/install-vm.md's "Try it on one host" block, run as written (bash, from a directory beside this checkout's
.venv): three "machines" as three directories, a clustered control plane on loopback with the cluster commands,
and two workloads whose sidecars carry frontend -> reviews."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "install-vm.md"


def loopback_block() -> str:
    section = DOC.read_text().split("## Try it on one host", 1)[1]
    return re.findall(r"```sh\n(.*?)```", section, re.S)[0]


@pytest.mark.timeout(150)
def test_the_loopback_walkthrough_gets_frontend_to_reviews_through_both_sidecars(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ISTHMUS_CONFIG", None)
    try:
        result = subprocess.run(["bash", "-c", "set -e\n" + loopback_block()], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=140)
        last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        logs = {p.name: p.read_text()[-600:] for p in (tmp_path / "cp").rglob("*.log")} if result.returncode else {}
        assert result.returncode == 0, (result.stderr[-2000:], logs)
        assert re.search(r'"reviews": \{"status": 200, "version": "v1"\}', last), (last, result.stderr[-2000:])
        for name in ("sidecar-reviews.log", "sidecar-frontend.log"):  # they joined with the tokens, as a VM does
            assert "no token given" not in (tmp_path / "cp" / name).read_text(), name
    finally:
        stop([int(p) for p in (tmp_path / "cp" / "pids").read_text().split()] if (tmp_path / "cp" / "pids").exists()
             else [])


def stop(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM the walkthrough's processes (its `kill $(cat cp/pids)`), SIGKILL those still there after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if _running(pid)]
            time.sleep(0.1)
        pids = alive


def _running(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)  # not our child (bash's): ChildProcessError below
    except ChildProcessError:
        try:
            os.kill(pid, 0)
            return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
        except (ProcessLookupError, FileNotFoundError):
            return False

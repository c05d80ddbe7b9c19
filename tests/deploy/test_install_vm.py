"""docs/install-vm.md's "Try it on one host" block, run as written (bash, from a directory beside this checkout's
.venv): three "machines" as three directories, a clustered control plane on loopback with the cluster commands,
and two workloads joined with `isthmus join --run` whose sidecars carry frontend -> reviews; then app2 calls reviews by
plain name (`http://reviews:9080/`), the name answered by its sidecar's DNS port (`dig`, as systemd-resolved would ask).
The joins' files are checked too: tokens and bus credentials 0600 in 0700 directories."""

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
        # in a network namespace of its own (util-linux's unshare, iproute2's ip): the doc's fixed ports (14222,
        # 16222, 12379, ...) lie in the range free_port picks from, so another test's process could hold one
        # (nats-1 once failed to bind 16222 this way)
        result = subprocess.run(["unshare", "--map-root-user", "--net", "bash", "-c",
                                 "ip link set lo up\nset -e\n" + loopback_block()], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=140)
        lines = result.stdout.strip().splitlines() or ["", ""]
        logs = {str(p.relative_to(tmp_path)): p.read_text()[-600:] for p in (tmp_path / "cp").rglob("*.log")}
        assert result.returncode == 0, (result.stderr[-2000:], logs)
        page, by_name = lines[-2], lines[-1]
        assert re.search(r'"reviews": \{"status": 200, "version": "v1"\}', page), (page, result.stderr[-2000:], logs)
        assert re.fullmatch(r'\{"service": "reviews", "version": "v1"\}', by_name.strip()), (by_name, logs)
        for app in ("app1", "app2"):  # what the joins wrote: secrets 0600 in 0700 directories
            root = tmp_path / "cp" / app
            name = "reviews" if app == "app1" else "frontend"
            for path in (root / f"etc/isthmus/sidecar-{name}.token",
                         root / f"var/lib/isthmus-sidecar-{name}/bus-client.yaml"):
                assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700, path
        for app in ("app1", "app2"):  # they joined with the tokens, as a VM does, not the operator's config
            assert "no token given" not in (tmp_path / "cp" / app / "sidecar.log").read_text(), app
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

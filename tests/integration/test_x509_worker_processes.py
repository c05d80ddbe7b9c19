"""The sidecar's X.509 worker children, seen from outside as real processes (real nats-server, etcd and ca): many
renewals leave no file descriptor, child or zombie behind, the children never carry the key in their argv or
environment, `cryptography` never maps into the sidecar, a stopping sidecar leaves no child, and the children
started ahead at start-up do not outlive their SPARE_SECONDS when the bus cannot be reached."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from isthmus.launch import free_port, project_env
from tests.integration.conftest import ControlPlane, Sidecar, eventually
from tests.integration.test_proxy_identity import certs, has_cert, leaf

pytestmark = pytest.mark.asyncio
WORKER = b"proxy.identity.x509_worker"
# 60 s certificates renewed when 98% of their life remains: a renewal every ~1.2 s
RENEW_FAST = {"ISTHMUS_SECRET_TTL": "60", "ISTHMUS_SECRET_GRACE_PERIOD_RATIO": "0.98",
              "ISTHMUS_SECRET_GRACE_PERIOD_RATIO_JITTER": "0.005"}


def children(pid: int) -> list[int]:
    """The direct children of `pid` (every thread's), zombies included."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass  # the process (or one of its threads) is gone: what was read so far
    return found


def proc_file(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def workers_alive(pids: set[int]) -> set[int]:
    """Those of `pids` that still run the X.509 worker (not reaped, or not reused by another program)."""
    return {pid for pid in pids if WORKER in proc_file(pid, "cmdline")}


class Watcher:
    """Samples a sidecar's children every few ms in a thread: their pids, and whether a key was in argv/environ."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: set[int] = set()
        self.leaks: list[str] = []
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            kids = children(self.pid)
            self.most = max(self.most, len(kids))
            for kid in kids:
                if kid in self.seen:
                    continue
                self.seen.add(kid)
                for name in ("cmdline", "environ"):
                    if b"PRIVATE KEY" in proc_file(kid, name):
                        self.leaks.append(f"{kid} {name}")
            time.sleep(0.003)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def maps_cryptography(pid: int) -> list[str]:
    return sorted({line.split()[-1] for line in proc_file(pid, "maps").decode(errors="replace").splitlines()
                   if "cryptography" in line or "_rust" in line})


async def test_many_renewals_leave_no_fd_child_or_zombie_and_never_map_cryptography(mesh: ControlPlane,
                                                                                   tmp_path: Path) -> None:
    """60 s certificates renewed when 98% of their life remains: ~1.2 s apart. After up to 50 renewals (90 s at
    most) the sidecar holds as many fds as after its first few, has no child left, and never mapped
    `cryptography`; no child ever had the key in its argv or environment."""
    sidecar = mesh.proxy("rn", free_port(), namespace="x509p", extra=("--state-dir", str(tmp_path / "st")),
                         env=RENEW_FAST)
    pid = sidecar.process.pid
    assert pid is not None
    watcher = Watcher(pid)
    try:
        await has_cert(sidecar)
        await eventually(lambda: certs(sidecar)["workload"]["renewals"] >= 3, timeout=30)
        await asyncio.sleep(0.5)
        base_fds = fds(pid)
        started = time.monotonic()
        while certs(sidecar)["workload"]["renewals"] < 50 and time.monotonic() - started < 90:
            status, _ = sidecar.admin("/certs")
            assert status == 200
            await asyncio.sleep(0.5)
        renewals = certs(sidecar)["workload"]["renewals"]
        secret = subprocess.run([sys.executable, "-m", "isthmus.cli", "proxy-config", "secret",
                                 "rn"], capture_output=True, text=True,
                                env=project_env(), timeout=30)
        # between renewals (~1.2 s apart, ~0.3 s of work): wait for a moment with no child
        quiet = await eventually(lambda: (fds(pid), children(pid)) if not children(pid) else None, timeout=10,
                                 interval=0.01)
    finally:
        watcher.stop()
    print(f"renewals={renewals} in {time.monotonic() - started:.0f}s; fds {base_fds} -> {quiet[0]}; "
          f"children seen {len(watcher.seen)}, most at once {watcher.most}; secret rc={secret.returncode}")
    assert renewals >= 20, sidecar.process.log_tail()
    assert secret.returncode == 0 and "spiffe://" in secret.stdout, secret.stderr
    assert quiet[0] <= base_fds + 2, os.listdir(f"/proc/{pid}/fd")
    assert maps_cryptography(pid) == []
    assert watcher.leaks == []
    assert workers_alive(watcher.seen - set(children(pid))) == set()
    assert watcher.most <= 3


async def test_a_sidecar_stopped_mid_renewal_leaves_no_worker(mesh: ControlPlane) -> None:
    """SIGTERM while renewals run back to back: every X.509 worker it started is gone soon after it exits."""
    sidecar = mesh.proxy("st", free_port(), namespace="x509p",
                         env=RENEW_FAST)
    pid = sidecar.process.pid
    assert pid is not None
    watcher = Watcher(pid)
    try:
        await has_cert(sidecar)
        await eventually(lambda: children(pid), timeout=10, interval=0.005)  # a renewal's worker runs
        os.kill(pid, signal.SIGTERM)
        await eventually(lambda: not sidecar.process.is_running, timeout=10)
    finally:
        watcher.stop()
    await eventually(lambda: not workers_alive(watcher.seen), timeout=3)


async def test_children_started_ahead_do_not_outlive_their_time_when_the_bus_is_down(tmp_path: Path) -> None:
    """A sidecar whose bus does not answer: the two X.509 workers `proxy run` starts ahead (~30 MB each) are
    killed after SPARE_SECONDS (10 s), not kept while it keeps trying."""
    dead = free_port()
    argv = [sys.executable, "-m", "isthmus.cli", "--nats", f"nats://127.0.0.1:{dead}", "proxy", "run",
            "--service", "down", "--namespace", "x509p", "--service-port", "9080", "--app-port", str(free_port()),
            "--inbound-port", str(free_port()), "--outbound-port", str(free_port()),
            "--admin-port", str(free_port()), "--token", "0123456789abcdef." + "A" * 43]
    env = project_env()
    env.pop("ISTHMUS_CONFIG", None)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < 16 and proc.poll() is None:
            samples.append((round(time.monotonic() - started, 1), len(children(proc.pid)), fds(proc.pid)))
            await asyncio.sleep(0.5)
        print(samples)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert max(n for _, n, _ in samples[:6]) >= 1  # started ahead
        assert children(proc.pid) == []  # ... and gone after SPARE_SECONDS
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


FAULTS = '''
import os, sys
if "proxy.identity.x509_worker" in sys.orig_argv:  # only in the sidecar's X.509 worker children
    folder = os.environ.get("X509_FAULTS", "")
    for name in sorted(os.listdir(folder)) if folder else ():
        try:
            os.remove(os.path.join(folder, name))  # one queued fault, taken by one child only
        except FileNotFoundError:
            continue
        os._exit(70)  # as a child the OOM killer or a fork failure took: no reply
'''


def faulty_workers(tmp_path: Path, count: int) -> dict[str, str]:
    """Environment under which the next `count` X.509 worker children die before answering (a sitecustomize
    on PYTHONPATH: the sidecar, its bus and the ca are untouched)."""
    site, queue = tmp_path / "faults-site", tmp_path / "faults"
    site.mkdir()
    queue.mkdir()
    (site / "sitecustomize.py").write_text(FAULTS)
    for i in range(count):
        (queue / f"{i:03}").touch()
    root = str(Path(__file__).resolve().parents[2])
    return {"PYTHONPATH": os.pathsep.join([str(site), root]), "X509_FAULTS": str(queue)}


async def test_a_restart_whose_first_worker_dies_still_uses_the_stored_certificate(mesh: ControlPlane,
                                                                                  tmp_path: Path) -> None:
    """A sidecar on a workload's host (no operator config) restarts with --state-dir and no token: the stored
    certificate is its identity. The X.509 workers started at its start die (a transient failure: out of memory,
    a fork refused); that is no reason to drop a valid stored certificate and exit for want of a token: it is
    checked again by a later worker and used."""
    from tests.integration.test_proxy_identity import token

    state = tmp_path / "proxy-state"
    secret, _ = await token(mesh, "x509r", "cart")
    first = mesh.proxy("cart", free_port(), namespace="x509r", operator_config=False,
                       extra=("--service-account", "cart", "--token", secret, "--state-dir", str(state)))
    issued = await has_cert(first)
    first.process.stop(5)
    again = mesh.proxy("cart", free_port(), namespace="x509r", operator_config=False,
                       extra=("--service-account", "cart", "--state-dir", str(state)), env=faulty_workers(tmp_path, 2))
    reused = await has_cert(again, timeout=30)
    assert reused["serial_number"] == issued["serial_number"]
    assert not os.listdir(tmp_path / "faults")  # the faults did happen


async def test_workers_killed_during_renewals_delay_them_but_do_not_stop_them(mesh: ControlPlane) -> None:
    """For 4 s an X.509 worker child is SIGKILLed once a newer one is seen (the OOM killer on a crowded VM): a
    renewal starts its chain checker, then the child that makes the key, so the checker dies idle, before its
    request is written. The renewals that failed are tried again; once children live again, renewals go on (on
    uvloop the write to the dead child raised RuntimeError, which ended the identity loop for good)."""
    sidecar = mesh.proxy("kl", free_port(), namespace="x509p",
                         env=RENEW_FAST)
    pid = sidecar.process.pid
    assert pid is not None
    await has_cert(sidecar)
    await eventually(lambda: certs(sidecar)["workload"]["renewals"] >= 2, timeout=30)
    base_fds = await eventually(lambda: fds(pid) if not children(pid) else None, timeout=10, interval=0.01)
    killed: set[int] = set()
    seen: list[int] = []
    until = time.monotonic() + 4
    while time.monotonic() < until:
        seen += [kid for kid in children(pid) if kid not in seen and WORKER in proc_file(kid, "cmdline")]
        for kid in seen[:-1]:  # all but the newest
            if kid not in killed and kid in children(pid):
                os.kill(kid, signal.SIGKILL)
                killed.add(kid)
        await asyncio.sleep(0.001)
    after = certs(sidecar)["workload"]["renewals"]
    assert killed
    await eventually(lambda: certs(sidecar)["workload"]["renewals"] >= after + 2, timeout=40)
    assert sidecar.process.is_running
    quiet_fds = await eventually(lambda: fds(pid) if not children(pid) else None, timeout=10, interval=0.01)
    print(f"killed {len(killed)} workers; fds {base_fds} -> {quiet_fds}")
    assert quiet_fds <= base_fds + 2, os.listdir(f"/proc/{pid}/fd")  # the dead children's pipes are closed

"""isthmus/launch/ with the real binaries: nats-server and etcd on free loopback ports, child
processes that die with their parent, the supervisor's restarts and stop order, service readiness."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from isthmus.launch import (
    LaunchError,
    ManagedProcess,
    PortInUse,
    Supervisor,
    _is_native,
    etcd_binary,
    free_port,
    nats_server_binary,
    service_argv,
    start_etcd,
    start_nats,
    wait_ready,
)
from proto.health import HealthReply
from runtime import bus as busmod


def gone(pid: int, within: float = 5.0) -> bool:
    """True once no process has this pid (zombies of our own children are reaped by Popen)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ")[1].startswith("Z"):
                    return True  # a zombie waiting for a parent that is not us: it no longer runs
        except OSError:
            return True
        time.sleep(0.05)
    return False


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def nats_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    proc = start_nats(tmp_path_factory.mktemp("nats"))
    yield proc
    proc.stop()


# ---------------------------------------------------------------------------------- binaries


def test_the_binaries_found_are_native_programs_not_wrapper_scripts() -> None:
    assert _is_native(Path(nats_server_binary()))
    assert _is_native(Path(etcd_binary()))


def test_service_argv_runs_the_service_module_with_bus_and_store() -> None:
    assert service_argv("pilot", "nats://n", "http://e", ["--lease-ttl", "2"]) == [
        sys.executable, "-P", "-m", "services.pilot", "--nats", "nats://n", "--etcd", "http://e", "--lease-ttl", "2"]


# ------------------------------------------------------------------------------- nats + etcd


async def test_nats_answers_on_its_port_with_8mb_payloads_and_is_gone_after_stop(tmp_path: Path) -> None:
    proc = start_nats(tmp_path)
    try:
        assert proc.url == f"nats://127.0.0.1:{proc.url.rsplit(':', 1)[1]}"
        client = await nats.connect(proc.url)
        assert client.max_payload == 8 * 1024 * 1024
        await client.close()
    finally:
        proc.stop()
    assert proc.returncode is not None and gone(proc.pid)
    assert "listen" in (tmp_path / "nats" / "nats.conf").read_text()
    assert (tmp_path / "logs" / "nats.log").exists()


def test_etcd_is_healthy_on_its_client_port_and_is_gone_after_stop(tmp_path: Path) -> None:
    proc = start_etcd(tmp_path, unsafe_no_fsync=True)
    try:
        with urllib.request.urlopen(f"{proc.url}/health", timeout=2) as resp:
            assert json.loads(resp.read())["health"] == "true"
    finally:
        proc.stop()
    assert proc.returncode is not None and gone(proc.pid)
    assert (tmp_path / "etcd" / "member").is_dir()


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as caught:
            start_nats(tmp_path, port)
        assert caught.value.port == port
        with pytest.raises(PortInUse):
            start_etcd(tmp_path, free_port(), port)


# -------------------------------------------------------------------------------- processes


def test_a_child_dies_with_its_parent_even_when_the_parent_is_killed(tmp_path: Path) -> None:
    parent_code = (
        "import sys, time\n"
        "from isthmus.launch import ManagedProcess\n"
        "child = ManagedProcess('sleeper', [sys.executable, '-c', 'import time; time.sleep(60)']).start()\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(python(parent_code), stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    child_pid = 0
    try:
        child_pid = int(parent.stdout.readline())
        assert not gone(child_pid, within=0.2)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert gone(child_pid)
    finally:
        parent.kill()
        parent.wait()
        if child_pid and not gone(child_pid, within=0):
            os.kill(child_pid, signal.SIGKILL)  # the test failed: leave nothing behind


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal, time, sys\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)"
    proc = ManagedProcess("stubborn", python(code), log_path=tmp_path / "stubborn.log").start()
    deadline = time.monotonic() + 5
    while "up" not in proc.log_tail().splitlines() and time.monotonic() < deadline:  # a line of its own
        time.sleep(0.02)
    assert proc.stop(timeout=0.3) == -signal.SIGKILL
    assert not proc.is_running


def test_waiting_on_a_process_that_exits_fails_with_its_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess("broken", python("print('bad config line 3'); raise SystemExit(2)"),
                          log_path=tmp_path / "broken.log", probe=lambda: False).start()
    with pytest.raises(LaunchError, match=r"(?s)broken exited with code 2.*bad config line 3"):
        proc.wait_ready(5)


def test_the_supervisor_restarts_a_crashed_process_after_a_backoff(tmp_path: Path) -> None:
    reports: list[str] = []
    supervisor = Supervisor(report=reports.append, backoff_initial=0.2)
    proc = supervisor.add(ManagedProcess("flaky", python("raise SystemExit(3)"), log_path=tmp_path / "f.log"))
    try:
        proc.popen.wait()
        supervisor.check()
        assert proc.starts == 1 and "flaky exited with code 3; restarting in 0.2s" in reports[0]
        time.sleep(0.25)
        supervisor.check()
        assert proc.starts == 2
        proc.popen.wait()
        supervisor.check()
        assert "restarting in 0.4s" in reports[-1]  # the second crash in a row waits longer
    finally:
        supervisor.stop_all()


def test_the_supervisor_stops_everything_in_reverse_start_order_and_restarts_nothing_after(tmp_path: Path) -> None:
    stopped: list[str] = []

    class Recorded(ManagedProcess):
        def stop(self, timeout: float = 5.0) -> int | None:
            stopped.append(self.name)
            return super().stop(timeout)

    supervisor = Supervisor(report=lambda _: None, backoff_initial=0.0)
    procs = [supervisor.add(Recorded(name, python("import time; time.sleep(60)"))) for name in ("a", "b", "c")]
    supervisor.stop_all(timeout=2)
    assert stopped == ["c", "b", "a"]
    supervisor.check()
    assert all(not p.is_running and p.starts == 1 for p in procs)


# ------------------------------------------------------------------------------- readiness


async def test_wait_ready_returns_the_reply_once_the_service_says_ready(nats_proc: ManagedProcess) -> None:
    bus = await busmod.connect(nats_proc.url, "test")
    answers = iter([False, True])

    async def health(_: bytes) -> bytes:
        return busmod.encode(HealthReply(service="fake", instance="i-1", ready=next(answers, True)))

    try:
        waiting = asyncio.ensure_future(wait_ready(bus, "fake", timeout=5))
        await asyncio.sleep(0.2)  # no responders yet: wait_ready keeps polling
        await bus.serve("isthmus.health.fake", health)
        reply = await waiting
        assert reply.ready and reply.instance == "i-1"
    finally:
        await bus.close()


async def test_wait_ready_fails_as_soon_as_the_service_process_exits(nats_proc: ManagedProcess,
                                                                    tmp_path: Path) -> None:
    bus = await busmod.connect(nats_proc.url, "test")
    proc = ManagedProcess("ghost", python("print('cannot bind'); raise SystemExit(1)"),
                          log_path=tmp_path / "ghost.log").start()
    began = time.monotonic()
    try:
        with pytest.raises(LaunchError, match=r"(?s)ghost exited with code 1.*cannot bind"):
            await wait_ready(bus, "ghost", timeout=20, process=proc)
        assert time.monotonic() - began < 10  # half the 20 s a wait that ignores the exit would take
    finally:
        await bus.close()


def test_free_ports_are_distinct_and_below_the_kernels_ephemeral_range():
    """So a port chosen for a sidecar cannot be taken, before it binds, by an outgoing connection's
    source port or another bind to port 0 (both come from the ephemeral range)."""
    from isthmus.launch import _ephemeral_floor

    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10_000 <= p < _ephemeral_floor() for p in ports)


def test_a_free_port_pair_has_its_successor_free_too_and_neither_is_handed_out_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """For `isthmus up --etcd-port`, whose peer port is the next one: a port whose successor is held is passed
    over (here every other port is held), and neither port of a pair comes back from free_port."""
    import socket

    from isthmus.launch import free_port_pair, ports

    base = free_port_pair()  # this worker's own ports (not fixed ones another process may hold), base + 1 free
    picks = iter(range(base, base + 100))
    monkeypatch.setenv(ports.PORT_RANGE_VARIABLE, f"{base}-{base + 199}")
    monkeypatch.setattr(ports.random, "randrange", lambda low, high: next(picks))
    ports._handed_out.difference_update({base, base + 1})  # picks to be made again
    with socket.socket() as held:
        held.bind(("127.0.0.1", base + 1))  # base's successor
        port = free_port_pair()
    assert port != base and port >= base + 2
    for p in (port, port + 1):
        with socket.socket() as check:
            check.bind(("127.0.0.1", p))
    assert not {port, port + 1} & {free_port() for _ in range(20)}


# --------------------------------------------------------------------------- health supervision


def _probe(answers: list[bool]):  # type: ignore[no-untyped-def]
    async def probe() -> bool:
        return answers.pop(0) if answers else False

    return probe


def test_the_supervisor_kills_a_process_after_three_missed_health_checks_in_a_row(tmp_path: Path) -> None:
    reports: list[str] = []
    supervisor = Supervisor(report=reports.append, health_misses=3, health_grace=60)
    proc = supervisor.add(ManagedProcess("hung", python("import time; time.sleep(60)")))
    supervisor.watch_health(proc, _probe([True, False, False, True, False, False, False]))
    try:
        for _ in range(6):  # answers once, misses two, answers, misses two: still running
            asyncio.run(supervisor.check_health())
        assert proc.is_running and not reports
        asyncio.run(supervisor.check_health())  # the third miss in a row
        proc.popen.wait(5)
        assert proc.returncode == -signal.SIGKILL
        assert "hung (pid" in reports[0] and "did not answer 3 health checks in a row" in reports[0]
    finally:
        supervisor.stop_all()


def test_a_starting_process_is_not_killed_for_missed_checks_within_its_grace(tmp_path: Path) -> None:
    supervisor = Supervisor(report=lambda _: None, health_misses=1, health_grace=60)
    proc = supervisor.add(ManagedProcess("slow", python("import time; time.sleep(60)")))
    supervisor.watch_health(proc, _probe([]))
    try:
        for _ in range(3):
            asyncio.run(supervisor.check_health())
        assert proc.is_running
        supervisor.health_grace = 0  # a process that never answered counts misses once its grace is over
        asyncio.run(supervisor.check_health())
        proc.popen.wait(5)
        assert not proc.is_running
    finally:
        supervisor.stop_all()


def test_the_supervisor_backoff_starts_over_after_a_run_that_stayed_up(tmp_path: Path) -> None:
    """Two quick crashes grow the backoff; a run that stays up stable_after seconds resets it, so the next
    crash restarts after backoff_initial again (at the bound: a run just short of it does not)."""
    runs = tmp_path / "runs"
    # runs 1, 2: exit at once; run 3: stays up 3 s (over stable_after: 2 s); run 4: exit at once
    code = (f"import pathlib, time; p = pathlib.Path({str(runs)!r}); n = len(p.read_text()) if p.exists() else 0; "
            "p.write_text('x' * (n + 1)); time.sleep(3 if n == 2 else 0); raise SystemExit(3)")
    reports: list[str] = []
    supervisor = Supervisor(report=reports.append, backoff_initial=0.05, backoff_max=10, stable_after=2.0)
    proc = supervisor.add(ManagedProcess("flaky", python(code), log_path=tmp_path / "f.log"))
    try:
        delays = []
        while len(delays) < 4:
            supervisor.check()
            if reports and "restarting in" in reports[-1] and len(reports) > len(delays) * 2:
                delays.append(float(reports[-1].split("restarting in ")[1].split("s")[0]))
            time.sleep(0.02)
        assert delays[:3] == [0.05, 0.1, 0.05], reports  # the 3 s run reset the count
        assert delays[3] == 0.1  # and counting starts again from there
        assert supervisor.failures(proc) == 2
    finally:
        supervisor.stop_all()


def test_a_long_run_that_never_answered_health_does_not_reset_the_backoff(tmp_path: Path) -> None:
    supervisor = Supervisor(report=lambda _: None, backoff_initial=0.05, stable_after=0.2, health_grace=60)
    proc = supervisor.add(ManagedProcess("mute", python("import time; time.sleep(60)"), log_path=tmp_path / "m.log"))

    async def silent() -> bool:
        return False

    async def answers() -> bool:
        return True

    try:
        supervisor.watch_health(proc, silent)
        supervisor._failures[id(proc)] = 3  # three failed runs before this one
        time.sleep(0.3)
        asyncio.run(supervisor.check_health())
        supervisor.check()
        assert not supervisor.healthy_run(proc, time.monotonic()) and supervisor.failures(proc) == 3
        supervisor.watch_health(proc, answers)
        asyncio.run(supervisor.check_health())
        supervisor.check()  # up over stable_after and answered: reset while it runs
        assert supervisor.healthy_run(proc, time.monotonic()) and supervisor.failures(proc) == 0
    finally:
        supervisor.stop_all()


def test_the_port_range_variable_bounds_every_pick_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """ISTHMUS_PORT_RANGE (tests/conftest.py gives each xdist worker a slice): picks stay inside it; a full
    range is an error, never a port from elsewhere; a malformed value names the variable."""
    import socket

    from isthmus.launch import ports

    monkeypatch.setenv(ports.PORT_RANGE_VARIABLE, "21000-21049")
    assert ports.port_range() == (21_000, 21_050)
    assert all(21_000 <= free_port() <= 21_049 for _ in range(20))
    monkeypatch.setenv(ports.PORT_RANGE_VARIABLE, "21100-21100")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 21_100))
        with pytest.raises(RuntimeError, match="ISTHMUS_PORT_RANGE=21100-21100"):
            free_port()
    for bad in ("21000", "x-y", "30000-20000", "0-10", "1-70000", "²-5", "20000-²"):  # str.isdigit takes "²"
        monkeypatch.setenv(ports.PORT_RANGE_VARIABLE, bad)
        with pytest.raises(ValueError, match="ISTHMUS_PORT_RANGE"):
            ports.port_range()


def test_a_free_port_pairs_successor_is_below_the_kernels_ephemeral_range_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The pair's second port (etcd's peer port) must not be the ephemeral range's first: there the kernel may
    hand it out (a source port, a bind to 0) before etcd binds it, which is what free_port's range avoids."""
    from isthmus.launch import free_port_pair, ports

    picks = iter([29_999, 25_000])
    monkeypatch.delenv(ports.PORT_RANGE_VARIABLE, raising=False)  # the default range, up to the ephemeral one
    monkeypatch.setattr(ports, "_ephemeral_floor", lambda: 30_000)
    monkeypatch.setattr(ports.random, "randrange", lambda low, high: next(picks))
    assert free_port_pair() == 25_000


def test_a_services_folder_where_up_runs_does_not_stand_in_for_the_control_plane(tmp_path: Path) -> None:
    """`python -m` puts the working directory first on sys.path: run from a project with a `services/` folder,
    `isthmus up` ran that project's code as the registry, pilot, ca... The services run with -P."""
    (tmp_path / "services").mkdir()
    marker = tmp_path / "ran"
    (tmp_path / "services" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('shadowed')\n")
    argv = service_argv("registry", "nats://127.0.0.1:1", "http://127.0.0.1:1")
    done = subprocess.run([*argv[:argv.index("--nats")], "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    assert not marker.exists()

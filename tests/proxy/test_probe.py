"""proxy/control/probe.py: a WorkloadGroup's readiness probe with Istio's semantics. Pure: the thresholds and the
schedule with a fake clock; real: httpGet against a local server, tcpSocket, exec true / false / past its timeout."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from proto.workload_group import Probe
from proxy.control.probe import MAX_OUTPUT, ProbeRunner, Thresholds, probe_once

pytestmark = pytest.mark.timeout(20)


# --- thresholds (Istio's PerformApplicationHealthCheck counting) ---

def test_state_is_undefined_until_a_threshold_is_reached_then_needs_consecutive_results():
    t = Thresholds(success=3, failure=2)
    assert [t.observe(ok) for ok in (True, True)] == [None, None] and t.state is None
    assert t.observe(True) is True  # the third success in a row
    assert t.observe(False) is None and t.observe(True) is None  # one failure, then the count starts over
    assert t.observe(False) is None and t.observe(False) is False
    assert t.observe(True) is None and t.observe(False) is None and t.observe(True) is None
    assert [t.observe(True) for _ in range(3)] == [None, True, None]  # 3 in a row (the first counted above)


def test_thresholds_of_zero_mean_one():
    t = Thresholds(success=0, failure=0)
    assert t.observe(False) is False and t.observe(True) is True and t.observe(True) is None


# --- the schedule, with a fake clock ---

class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def _drive(runner: ProbeRunner, checks: int) -> None:
    task = asyncio.create_task(runner.run())
    while runner.calls < checks:  # type: ignore[attr-defined]
        await asyncio.sleep(0)
    task.cancel()


async def test_checks_start_after_the_initial_delay_and_repeat_every_period():
    fake = FakeTime()
    results = iter([True, True, False, False, True])
    seen: list[float] = []

    async def check(probe: Probe, host: str) -> tuple[bool, str]:
        seen.append(fake.now)
        runner.calls += 1  # type: ignore[attr-defined]
        fake.now += 0.5  # each check takes half a second
        return next(results), "boom"

    probe = Probe(source="ns/g", kind="tcp", port=1, initial_delay_s=7, period_s=3, success_threshold=2,
                  failure_threshold=2)
    runner = ProbeRunner(probe, "127.0.0.1", check=check, sleep=fake.sleep, clock=fake.clock)
    runner.calls = 0  # type: ignore[attr-defined]
    changes: list[bool] = []
    runner.on_change = changes.append
    assert not runner.healthy  # undefined: unhealthy
    await _drive(runner, 5)
    assert seen == [7.0, 10.0, 13.0, 16.0, 19.0]  # the period is from one check's start to the next
    assert fake.sleeps[0] == 7 and all(s == 2.5 for s in fake.sleeps[1:])
    assert changes == [True, False]
    assert not runner.healthy and runner.last_error == "boom"


async def test_a_check_longer_than_the_period_is_followed_at_once():
    fake = FakeTime()

    async def check(probe: Probe, host: str) -> tuple[bool, str]:
        runner.calls += 1  # type: ignore[attr-defined]
        fake.now += 5
        return True, ""

    runner = ProbeRunner(Probe(source="s", kind="tcp", period_s=2), "h", check=check, sleep=fake.sleep, clock=fake.clock)
    runner.calls = 0  # type: ignore[attr-defined]
    await _drive(runner, 3)
    assert fake.sleeps[1:3] == [0.0, 0.0] and runner.healthy


# --- real checks ---

async def _http_server(status: int, seen: list[bytes]) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (302, True), (399, True), (400, False), (503, False),
                                                 (199, False)])
async def test_http_get_is_healthy_on_2xx_and_3xx(status, healthy):
    seen: list[bytes] = []
    server = await _http_server(status, seen)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok, why = await probe_once(Probe(source="s", kind="http", port=port, path="/ready?x=1",
                                         headers=[("X-Probe", "yes")]), "127.0.0.1")
    assert ok is healthy and (ok or f"bad code {status}" in why)
    head = seen[0].decode()
    assert head.startswith("GET /ready?x=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in head and "User-Agent: istio-probe/1.0\r\n" in head
    assert "X-Probe: yes\r\n" in head


async def test_http_get_headers_replace_host_and_user_agent():
    seen: list[bytes] = []
    server = await _http_server(204, seen)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok, _ = await probe_once(Probe(source="s", kind="http", port=port,
                                       headers=[("Host", "app.local"), ("User-Agent", "mine")]), "127.0.0.1")
    head = seen[0].decode()
    assert ok and "Host: app.local\r\n" in head and "User-Agent: mine\r\n" in head
    assert "istio-probe" not in head and f"127.0.0.1:{port}" not in head


async def test_http_get_that_never_answers_fails_at_its_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    async with server:
        ok, why = await probe_once(Probe(source="s", kind="http", port=port, timeout_s=1), "127.0.0.1")
    assert not ok and "within 1s" in why and time.monotonic() - started < 5


async def test_http_get_with_an_endless_status_line_fails():
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 " + b"x" * 100_000)
        await writer.drain()
    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok, why = await probe_once(Probe(source="s", kind="http", port=port, timeout_s=3), "127.0.0.1")
    assert not ok and why == "no valid HTTP status line"


async def test_tcp_socket_is_healthy_while_something_listens():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert (await probe_once(Probe(source="s", kind="tcp", port=port), "127.0.0.1"))[0] is True
    ok, why = await probe_once(Probe(source="s", kind="tcp", port=port), "127.0.0.1")
    assert not ok and why


async def test_exec_true_is_healthy_and_false_is_not():
    assert await probe_once(Probe(source="s", kind="exec", command=["true"]), "") == (True, "")
    ok, why = await probe_once(Probe(source="s", kind="exec", command=["false"]), "")
    assert not ok and why == "exit status 1"


async def test_exec_runs_without_a_shell():
    ok, _ = await probe_once(Probe(source="s", kind="exec", command=["true && false"]), "")
    assert not ok  # no shell: there is no program named "true && false"
    ok, _ = await probe_once(Probe(source="s", kind="exec", command=["test", "$HOME", "=", "$HOME"]), "")
    assert ok  # `$HOME` is passed as is, not expanded


async def test_exec_past_its_timeout_is_killed_with_its_children():
    started = time.monotonic()
    ok, why = await probe_once(Probe(source="s", kind="exec", timeout_s=1,
                                     command=["sh", "-c", "sleep 30 & sleep 30"]), "")
    assert not ok and "timeout" in why and time.monotonic() - started < 5


async def test_exec_output_is_read_to_the_end_and_kept_bounded():
    code = f"import sys; sys.stdout.write('x' * {4 * MAX_OUTPUT}); sys.exit(3)"
    ok, why = await probe_once(Probe(source="s", kind="exec", timeout_s=10, command=[sys.executable, "-c", code]), "")
    assert not ok and why.startswith("exit status 3: xxx") and len(why) < 300


async def test_exec_of_a_missing_program_fails_with_the_reason():
    ok, why = await probe_once(Probe(source="s", kind="exec", command=["/nonexistent/check"]), "")
    assert not ok and "No such file" in why


@pytest.mark.parametrize(("length", "healthy"), [(4096, True), (4097, False)])
async def test_an_http_get_status_line_of_up_to_4_kib_is_read(length, healthy):
    from proxy.control.probe import MAX_STATUS_LINE

    assert MAX_STATUS_LINE == 4096
    line = b"HTTP/1.1 200 " + b"x" * (length - len(b"HTTP/1.1 200 \r\n")) + b"\r\n"
    assert len(line) == length

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line + b"content-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        ok, _ = await probe_once(Probe(source="s", kind="http", port=port, timeout_s=3), "127.0.0.1")
    assert ok is healthy

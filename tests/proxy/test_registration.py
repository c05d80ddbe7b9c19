"""The sidecar's registration loop tells a refusal from an unreachable registry (proxy/control/registration.py)."""

from __future__ import annotations

import asyncio

import pytest

from proto.registry import RegisterReply, Workload
from proxy.control import registration
from runtime.bus import BusError

pytestmark = pytest.mark.timeout(10)


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.lines.append((level, event, fields))


class ScriptedBus:
    """Answers each register call with the next scripted reply (or raises it)."""

    def __init__(self, replies: list[object]) -> None:
        self.replies = replies
        self.calls = 0

    async def call(self, subject: str, message: object, reply_type: type, timeout: float = 5.0) -> object:
        self.calls += 1
        reply = self.replies[min(self.calls, len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply


async def run_briefly(bus: ScriptedBus, monkeypatch, seconds: float) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(registration, "log", recorder)
    monkeypatch.setattr(registration, "probe_tcp", lambda host, port: asyncio.sleep(0, True))
    reg = registration.Registration(Workload(id="w", service="s", namespace="ns", address="127.0.0.1"),
                                    "127.0.0.1", 1)
    task = asyncio.create_task(reg.run(bus))  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    task.cancel()
    return recorder


async def test_a_refused_registration_is_logged_as_refused_with_its_reason_and_retried_slowly(monkeypatch):
    bus = ScriptedBus([RegisterReply(ok=False, error="label value 'x y' is not valid")])
    recorder = await run_briefly(bus, monkeypatch, 2.0)
    events = [(level, event) for level, event, _ in recorder.lines]
    assert ("error", "registration refused") in events and ("warning", "registry unreachable") not in events
    assert recorder.lines[0][2]["error"] == "label value 'x y' is not valid"
    assert bus.calls <= 3  # backs off (1 s, then 2 s...) instead of a tight retry loop


async def test_an_unreachable_registry_is_still_reported_as_unreachable(monkeypatch):
    bus = ScriptedBus([BusError("no responders on isthmus.registry.register")])
    recorder = await run_briefly(bus, monkeypatch, 0.5)
    assert [event for _, event, _ in recorder.lines][:1] == ["registry unreachable"]


async def test_a_pushed_probe_replaces_the_tcp_check_until_it_is_withdrawn():
    from proto.workload_group import Probe

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reg = registration.Registration(Workload(id="w", service="s"), "127.0.0.1", port)
    async with server:
        assert await reg.check() is True  # the default: a TCP connect to the app's port
        failing = Probe(source="ns/g", kind="exec", command=["false"], period_s=1)
        reg.set_probe(failing)
        runner = reg.probe
        assert await reg.check() is False  # undefined until the failure threshold: unhealthy
        for _ in range(100):
            if runner.thresholds.state is False:
                break
            await asyncio.sleep(0.05)
        assert runner.thresholds.state is False and await reg.check() is False
        reg.set_probe(Probe(source="ns/g", kind="exec", command=["false"], period_s=1))
        assert reg.probe is runner  # the same probe again: not restarted
        reg.set_probe(None)
        assert reg.probe is None and await reg.check() is True
        assert runner is not None and reg._probe_task is None


async def test_the_refusal_is_kept_for_ready_until_a_registration_succeeds(monkeypatch):
    holder = "workload id 'w' is already registered by namespace 'other', service 'x', service account 'default'"
    bus = ScriptedBus([RegisterReply(ok=False, error=holder), RegisterReply(ok=True, lease_id=7, ttl=5)])
    monkeypatch.setattr(registration, "probe_tcp", lambda host, port: asyncio.sleep(0, True))
    reg = registration.Registration(Workload(id="w", service="s", namespace="ns"), "127.0.0.1", 1)
    reg.bus = bus  # type: ignore[assignment]
    with pytest.raises(registration.RegistrationRefused, match="namespace 'other'"):
        await reg._register()
    assert reg.refused == holder
    await reg._register()
    assert (reg.refused, reg.lease_id) == ("", 7)

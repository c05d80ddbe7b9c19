"""LeaseHold's rules without sockets (tests/integration/test_bus_outage_lease.py drives it with the real bus and
etcd): leases are refreshed only while the bus is out and for the grace after it, and an outage longer than
max_hold stops the hold, so a replica cut off from the bus cannot keep dead workloads forever."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from runtime.bus import BusTimeout, NoResponders
from runtime.store import REGISTRY_PREFIX
from runtime.lease_hold import LeaseHold

pytestmark = pytest.mark.asyncio


class Bus:
    def __init__(self) -> None:
        self.up = True
        self.connected = True

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        if not self.up:
            raise BusTimeout(f"no reply on {subject} within {timeout}s")
        raise NoResponders(subject)  # the server answered: nobody else listens (still "up")


class Store:
    def __init__(self) -> None:
        self.refreshed: list[int] = []

    async def list(self, prefix: str) -> tuple[list[SimpleNamespace], int]:
        assert prefix == REGISTRY_PREFIX
        return [SimpleNamespace(lease=7), SimpleNamespace(lease=7), SimpleNamespace(lease=9),
                SimpleNamespace(lease=0)], 1

    async def refresh(self, lease: int) -> int:
        self.refreshed.append(lease)
        return 5


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, event: str, **kw: object) -> None:
        self.lines.append(event)

    info = warning


async def _run_for(hold: LeaseHold, seconds: float) -> None:
    task = asyncio.ensure_future(hold.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_nothing_is_refreshed_while_the_bus_answers() -> None:
    bus, store = Bus(), Store()
    await _run_for(LeaseHold(bus, store, Log(), probe_subject="p", interval=0.02, grace=0.1), 0.15)  # type: ignore[arg-type]
    assert store.refreshed == []


async def test_every_lease_is_refreshed_once_per_round_while_the_bus_is_out_and_during_the_grace() -> None:
    bus, store, log = Bus(), Store(), Log()
    bus.up = False
    hold = LeaseHold(bus, store, log, probe_subject="p", interval=0.02, grace=0.1)  # type: ignore[arg-type]
    task = asyncio.ensure_future(hold.run())
    await asyncio.sleep(0.1)
    assert store.refreshed and set(store.refreshed) == {7, 9}  # each lease once per round, lease 0 skipped
    assert store.refreshed.count(7) == store.refreshed.count(9)
    bus.up = True
    await asyncio.sleep(0.05)
    during_grace = len(store.refreshed)
    await asyncio.sleep(0.25)  # past the grace: refreshing stops
    after = len(store.refreshed)
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert after > during_grace  # still refreshed within the grace
    assert len(store.refreshed) == after  # and not after it
    assert log.lines[0].startswith("heartbeats cannot arrive") and log.lines[1].startswith("heartbeats can arrive")


async def test_an_outage_longer_than_max_hold_stops_the_hold() -> None:
    bus, store, log = Bus(), Store(), Log()
    bus.connected = False  # reconnecting: down without even asking
    hold = LeaseHold(bus, store, log, probe_subject="p", interval=0.02, grace=0.1, max_hold=0.1)  # type: ignore[arg-type]
    task = asyncio.ensure_future(hold.run())
    await asyncio.sleep(0.2)
    stopped_at = len(store.refreshed)
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stopped_at > 0 and len(store.refreshed) == stopped_at
    assert sum(line.startswith("heartbeats could not arrive for longer") for line in log.lines) == 1  # warned once


async def test_for_pilot_no_registry_replica_answering_is_an_outage() -> None:
    bus, store = Bus(), Store()  # up, but the server answers "no responders"
    hold = LeaseHold(bus, store, Log(), probe_subject="p", interval=0.02, grace=0.1, nobody_is_down=True)  # type: ignore[arg-type]
    await _run_for(hold, 0.1)
    assert store.refreshed  # the registry is gone: pilot holds the leases

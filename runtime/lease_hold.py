"""Static stability for registrations: leases are not allowed to expire because the control plane failed.

A workload's registration lives under an etcd lease that its proxy's heartbeats refresh over the bus.
When the bus is down, no heartbeat arrives, and etcd would expire every lease after one TTL although the
workloads are healthy; once the bus returned, every proxy would be told its peers had gone and would answer
503 until they registered again. Envoy and Istio prefer stale endpoints to none when the control plane
cannot hear the data plane (istio.io "static stability": proxies keep their last config); this does the
same on the control plane's side: while heartbeats cannot arrive, every registration's lease is refreshed
here instead, and for a grace period after, so proxies have time to resume their heartbeats. A workload
that really died during the outage is removed one TTL after the grace. Two holders, each for the outage
it can see:
- every registry replica, while it cannot reach the bus (`nobody_is_down=False`);
- every pilot replica, while no registry replica answers (`nobody_is_down=True`): with all registries
  stopped, etcd would otherwise expire every lease and pilot would push the removals.
Refreshing a lease twice is harmless.

How it is judged, every `interval` seconds: the client is connected and a request through the server (to
the registry's health subject) is answered within `interval`; "no responders" from the server is an
outage only for `nobody_is_down` (the registry asking itself may find no replica serving yet, which says
the bus is up); anything else is an outage. This also catches a server that hangs with its connections open, which the
client's ping timer notices only after several pings. (Not a PING/PONG `flush` with a timeout: nats-py
leaves the timed-out PONG waiter queued, and the late PONG then stops its read loop, nats.py#624's kin.)

Bounded: the hold lasts at most `max_hold` seconds per outage (a replica cut off from the bus but not from
etcd must not keep dead workloads forever), and each round lists the registry prefix once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.bus import Bus, BusError, NoResponders
from runtime.store import REGISTRY_PREFIX, Store, StoreError

MAX_HOLD = 600.0  # seconds one outage may keep leases alive


class LeaseHold:
    """Run `run()` as a task. `interval` (s): probe period, a third of the lease TTL so a lease is refreshed
    before it can expire; `grace` (s): how long to keep refreshing after the bus returns."""

    def __init__(self, bus: Bus, store: Store, log: Any, *, probe_subject: str, interval: float, grace: float,
                 nobody_is_down: bool = False, max_hold: float = MAX_HOLD) -> None:
        self.bus = bus
        self.probe_subject = probe_subject
        self.nobody_is_down = nobody_is_down
        self.store = store
        self.log = log
        self.interval = interval
        self.grace = grace
        self.max_hold = max_hold
        self.down_since: float | None = None  # loop time this replica lost the bus
        self.hold_until = 0.0  # loop time the hold ends after the bus came back
        self.gave_up = False  # this outage outlasted max_hold (warned once)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            up = await self._bus_answers()
            now = loop.time()
            if up:
                if self.down_since is not None:
                    self.log.info("heartbeats can arrive again: holding leases while proxies resume them",
                                  grace_s=self.grace, outage_s=round(now - self.down_since, 1))
                    self.down_since = None
                    self.gave_up = False
                    self.hold_until = now + self.grace
                hold = now < self.hold_until
            else:
                if self.down_since is None:
                    self.down_since = now
                    self.log.warning("heartbeats cannot arrive: holding every registration's lease", probe=self.probe_subject,
                                     max_hold_s=self.max_hold)
                hold = now - self.down_since <= self.max_hold
                if not hold and not self.gave_up:
                    self.gave_up = True
                    self.log.warning("heartbeats could not arrive for longer than the hold: leases expire from now on",
                                     max_hold_s=self.max_hold)
            if hold:
                await self._refresh_all()
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    async def _bus_answers(self) -> bool:
        if not self.bus.connected:  # reconnecting
            return False
        try:
            await self.bus.request(self.probe_subject, b"", timeout=self.interval)
        except NoResponders:  # the server is up and routing, and no replica of the probed service listens
            return not self.nobody_is_down
        except BusError:  # timeout, connection closed: no heartbeat can arrive either
            return False
        return True

    async def _refresh_all(self) -> None:
        try:
            entries, _ = await self.store.list(REGISTRY_PREFIX)
            for lease in {entry.lease for entry in entries if entry.lease}:
                await self.store.refresh(lease)
        except StoreError as exc:  # etcd away too: nothing to hold, and nothing expires without it
            self.log.warning("holding leases failed", error=str(exc))

"""The proxy's config subscription: deltas from xds.push, snapshots on start, reconnect and gaps.

A push applies only if it is the next in sequence of the epoch we hold; anything else (a missed
push, a new pilot leader) triggers a snapshot request. Deltas that arrive while a snapshot is in
flight are kept (at most MAX_HELD) and replayed after it, so none is lost; one still ahead of the
snapshot is dropped and another snapshot asked for after a pause (0.1 s, doubling to 2 s while it
repeats). Every applied push is ACKed, every rejected one NACKed with the error; a rejected push
leaves the previous config in force. When the bus or pilot is away the proxy keeps serving with what
it holds (static stability). Routes the state holds pending are applied when their grace ends
(ConfigState.expire), by one timer the client keeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from proto import subjects
from proto.xds import Ack, Push, SnapshotRequest
from proxy.control.config_state import ConfigRejected, ConfigState
from runtime.bus import Bus, BusError, decode, encode
from runtime.log import get_logger
from runtime.version import VERSION

MAX_ACK_ERROR = 4096  # characters of a rejection's reason sent in the NACK: it must fit the bus's max_payload

log = get_logger("proxy.xds")

MAX_HELD = 1024  # deltas kept while a snapshot is fetched


class XdsClient:
    def __init__(self, state: ConfigState, proxy_id: str, service: str, namespace: str,
                 on_applied: Callable[[], None] | None = None) -> None:
        self.state = state
        self.proxy_id = proxy_id
        self.service = service
        self.namespace = namespace
        self.on_applied = on_applied
        self.bus: Bus | None = None
        self.bus_user = ""  # named in every ACK: where the operator asks this proxy (proxy/control/debug.py)
        self.gateway = False
        self.epoch = ""
        self.seq = 0
        self.synced = asyncio.Event()  # set once a snapshot was applied
        self._resync = asyncio.Event()
        self._snapshotting = False
        self._held: list[Push] = []
        self._expiry: asyncio.TimerHandle | None = None  # ends the grace of the first pending route

    async def attach(self, bus: Bus) -> None:
        self.bus = bus
        await bus.listen(subjects.XDS_PUSH, self._on_push)
        self.request_resync()

    def request_resync(self) -> None:
        self._resync.set()

    async def run(self) -> None:
        """Resync loop: fetch a snapshot whenever asked, retrying until pilot answers."""
        delay = 0.1
        gap_delay = 0.1  # between snapshots while a held push stays ahead of them
        while True:
            await self._resync.wait()
            if self.bus is None:
                await asyncio.sleep(delay)
                continue
            self._snapshotting = True
            try:
                data = await self.bus.request(subjects.XDS_SNAPSHOT, encode(SnapshotRequest(proxy_id=self.proxy_id)),
                                              timeout=5.0)
                snapshot = decode(data, Push)
            except (BusError, ValueError) as exc:
                log.warning("snapshot unavailable, serving last config", error=str(exc))
                self._snapshotting = False
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter: proxies must not retry in step
                delay = min(delay * 2, 2.0)
                continue
            self._resync.clear()
            delay = 0.1
            self._snapshotting = False
            held, self._held = self._held, []
            await self._apply(snapshot)
            if not await self._replay(held):  # a gap remains past the snapshot: ask again, after a pause
                await asyncio.sleep(gap_delay * random.uniform(0.5, 1.5))
                gap_delay = min(gap_delay * 2, 2.0)
                self.request_resync()
            else:
                gap_delay = 0.1

    async def _replay(self, held: list[Push]) -> bool:
        """Apply the held deltas that follow the snapshot, in order; older ones are dropped. False at the first
        that does not follow (a gap past the snapshot): it and the rest are dropped too, and the caller asks
        for another snapshot, which holds them if pilot published them. A push from beyond pilot's view is
        never applied, and costs one more snapshot, not a loop of them."""
        later = sorted((p for p in held if p.epoch == self.epoch and p.seq > self.seq), key=lambda p: p.seq)
        for push in later:
            if push.seq <= self.seq:
                continue  # a duplicate
            if push.seq != self.seq + 1:
                log.info("a held push is still ahead of the snapshot, resyncing", have=f"{self.epoch}/{self.seq}",
                         got=f"{push.epoch}/{push.seq}")
                return False
            await self._apply(push)
        return True

    async def _on_push(self, data: bytes) -> None:
        await self._on_push_obj(decode(data, Push))

    async def _on_push_obj(self, push: Push) -> None:
        if self._snapshotting or self._resync.is_set():
            self._hold(push)
            return
        if push.epoch != self.epoch or push.seq != self.seq + 1:
            log.info("push out of sequence, resyncing", have=f"{self.epoch}/{self.seq}", got=f"{push.epoch}/{push.seq}")
            self._hold(push)
            self.request_resync()
            return
        await self._apply(push)

    def _hold(self, push: Push) -> None:
        """Keep a delta for after the snapshot; at most MAX_HELD (the oldest go: the snapshot covers them)."""
        if len(self._held) >= MAX_HELD:
            del self._held[0]
        self._held.append(push)

    def _schedule_expiry(self) -> None:
        """One timer at the end of the first pending route's grace (none when nothing waits)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        deadline = self.state.next_expiry()
        if deadline is not None:
            delay = max(0.0, deadline - self.state.clock())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self.state.expire() and self.on_applied is not None:
            self.on_applied()
        self._schedule_expiry()

    async def _apply(self, push: Push) -> None:
        error = ""
        try:
            self.state.apply(push)
        except ConfigRejected as exc:
            error = str(exc)
            log.warning("push rejected", seq=push.seq, error=error)
        self._schedule_expiry()
        # The sequence moves on even when a push is rejected: the next delta builds on pilot's view,
        # and a later snapshot brings everything back in line.
        self.epoch, self.seq = push.epoch, push.seq
        if push.full and not error:
            self.synced.set()
        if not error and self.on_applied is not None:
            self.on_applied()
        if self.bus is not None:
            ack = Ack(proxy_id=self.proxy_id, epoch=push.epoch, seq=push.seq, version=push.version, ok=not error,
                      error=error[:MAX_ACK_ERROR], service=self.service, namespace=self.namespace,
                      bus_user=self.bus_user, proxy_version=VERSION, gateway=self.gateway)
            try:
                await self.bus.publish(subjects.XDS_ACK, encode(ack))
            except Exception as exc:
                log.debug("ack not sent", error=str(exc))

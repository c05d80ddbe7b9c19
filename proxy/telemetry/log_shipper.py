"""The `isthmus` access-log provider: entries shipped in batches to the telemetry service over the bus.

    LogShipper(proxy_id, namespace, service, service_account, settings)
    shipper.sink(listener)(record)      queue the record's entry (no I/O)
    shipper.attach(publish)             the bus's publish, once connected; run() ships until cancelled
    shipper.dropped                     entries dropped because the queue was full (oldest first)

Subject: identity_subject(TELEMETRY_LOGS, namespace, service account) (proto/subjects.py): nats-server lets a
proxy publish only under its own identity (proto/busauth.py). Payload: proto.observations.AccessLogBatch, at most
`batch` entries and never over the bus's max_payload (a batch that is too large is split; a single entry that
is too large is dropped and counted). Bounded: at most `queue` entries wait (ISTHMUS_ACCESS_LOG_QUEUE); past it
the oldest is dropped and counted (`dropped`, and a warning at most every 10 s), so a slow or absent bus
never holds more memory. Sent every `interval` seconds (ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL, Envoy's access
log flush interval: 1 s); while the bus is down entries wait in the queue. One entry costs the building of one
AccessLogEntry on the request's path; encoding and publishing happen on the interval.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from proto.observations import AccessLogBatch, AccessLogEntry
from proto.subjects import TELEMETRY_LOGS, identity_subject
from proxy.core.access import AccessRecord, OnComplete, Stamp, entry_of
from runtime.bus import encode
from runtime.log import get_logger

log = get_logger("proxy.access_log")
Publish = Callable[[str, bytes], Awaitable[None]]
HEADER_ROOM = 1024  # bytes kept free under max_payload for NATS headers and the batch's own fields


@dataclass(frozen=True)
class ShipperSettings:
    """ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL (s, 1), ISTHMUS_ACCESS_LOG_QUEUE (entries, 10000),
    ISTHMUS_ACCESS_LOG_BATCH (entries per message, 500)."""

    interval: float = field(default_factory=lambda: float(os.environ.get("ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL", "1")))
    queue: int = field(default_factory=lambda: int(os.environ.get("ISTHMUS_ACCESS_LOG_QUEUE", "10000")))
    batch: int = field(default_factory=lambda: int(os.environ.get("ISTHMUS_ACCESS_LOG_BATCH", "500")))

    def __post_init__(self) -> None:
        if not self.interval > 0 or self.queue < 1 or self.batch < 1:
            raise ValueError("ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL must be > 0, ISTHMUS_ACCESS_LOG_QUEUE and "
                             "ISTHMUS_ACCESS_LOG_BATCH at least 1")


class LogShipper:
    def __init__(self, proxy_id: str, namespace: str, service: str, service_account: str,
                 settings: ShipperSettings | None = None) -> None:
        self.settings = settings or ShipperSettings()
        self.proxy_id, self.namespace, self.service = proxy_id, namespace, service
        self.subject = identity_subject(TELEMETRY_LOGS, namespace, service_account)
        self.queue: deque[AccessLogEntry] = deque()
        self.dropped = 0
        self.shipped = 0
        self.publish: Publish | None = None
        self.max_payload = 1024 * 1024  # nats-server's default, until attach() says the bus's
        self.stamp = Stamp()
        self._warned = float("-inf")

    def sink(self, listener: str) -> OnComplete:
        def ship(r: AccessRecord) -> None:
            self.add(entry_of(listener, r, self.stamp(time.time() - r.duration_ms / 1000.0)))
        return ship

    def add(self, entry: AccessLogEntry) -> None:
        queue = self.queue
        if len(queue) >= self.settings.queue:
            queue.popleft()
            self._drop(1)
        queue.append(entry)

    def _drop(self, count: int) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._warned >= 10.0:
            self._warned = now
            log.warning("access log entries dropped: the queue for the telemetry service is full",
                        dropped=self.dropped, queue=self.settings.queue)

    def attach(self, publish: Publish, max_payload: int | None = None) -> None:
        self.publish = publish
        if max_payload:
            self.max_payload = max_payload

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval)
            await self.ship()

    async def ship(self) -> None:
        """Send what is queued, a batch at a time; on a bus error what was taken is put back (front)."""
        publish = self.publish
        while self.queue and publish is not None:
            taken = [self.queue.popleft() for _ in range(min(self.settings.batch, len(self.queue)))]
            try:
                await self._send(publish, taken)
            except Exception as exc:  # the bus is down or refused: keep them for the next interval
                self.queue.extendleft(reversed(taken))
                overflow = len(self.queue) - self.settings.queue
                for _ in range(max(0, overflow)):
                    self.queue.popleft()
                if overflow > 0:
                    self._drop(overflow)
                log.debug("access log batch not shipped", error=str(exc) or type(exc).__name__)
                return

    async def _send(self, publish: Publish, entries: list[AccessLogEntry]) -> None:
        payload = encode(AccessLogBatch(proxy_id=self.proxy_id, namespace=self.namespace, service=self.service,
                                        entries=entries))
        if len(payload) > self.max_payload - HEADER_ROOM:
            if len(entries) == 1:
                self._drop(1)  # one entry larger than a message may be: it cannot be shipped
                return
            half = len(entries) // 2
            await self._send(publish, entries[:half])
            await self._send(publish, entries[half:])
            return
        await publish(self.subject, payload)
        self.shipped += len(entries)

"""Finished spans, sent to the telemetry service in batches over the bus (proto.observations.SpanBatch on
`identity_subject(TELEMETRY_SPANS, namespace, service account)`).

    SpanReporter.add(span)          on the hot path of a sampled request: one deque append
    await SpanReporter.run(bus)     the sending loop, for the sidecar's life

A batch goes out when `batch` spans are waiting (ISTHMUS_SPAN_BATCH) or `interval` seconds after the last
one went (ISTHMUS_SPAN_FLUSH_INTERVAL), whichever comes first: Envoy's Zipkin reporter flushes on
tracing.zipkin.min_flush_spans (5) or tracing.zipkin.flush_interval_ms (5 s). Our defaults differ for a
reason: a bus message costs far less than Envoy's HTTP POST to a collector, so batches may be larger
(100), and a trace should show in the dashboard within a second, not five. The queue is bounded
(`max_queue`, ISTHMUS_SPAN_QUEUE): while the bus is away spans wait there, and past the bound the oldest
are dropped and counted (`dropped`), so a dead bus never grows memory. A batch the bus refuses (larger
than its max_payload, which the bounded tag length makes unlikely) is dropped and counted (`failed`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from proto.observations import Span, SpanBatch
from runtime import bus as busmod
from runtime.log import get_logger

log = get_logger("proxy.tracing")

FLUSH_INTERVAL = 1.0  # seconds
BATCH = 100  # spans
MAX_QUEUE = 1000  # spans


class SpanReporter:
    """`subject`: this sidecar's span subject; `batch` >= 1, `max_queue` >= `batch`, `interval` > 0."""

    def __init__(self, proxy_id: str, subject: str, batch: int = BATCH, max_queue: int = MAX_QUEUE,
                 interval: float = FLUSH_INTERVAL) -> None:
        if batch < 1 or max_queue < batch or interval <= 0:
            raise ValueError(f"span batch {batch} must be >= 1, queue {max_queue} >= the batch, "
                             f"flush interval {interval} > 0")
        self.proxy_id = proxy_id
        self.subject = subject
        self.batch = batch
        self.max_queue = max_queue
        self.interval = interval
        self.spans: deque[Span] = deque()
        self.sent = 0  # spans published
        self.dropped = 0  # spans dropped because the queue was full (the oldest go)
        self.failed = 0  # spans in batches the bus refused
        self._wake: asyncio.Event | None = None

    def add(self, span: Span) -> None:
        spans = self.spans
        if len(spans) >= self.max_queue:
            spans.popleft()
            self.dropped += 1
        spans.append(span)
        if len(spans) >= self.batch and self._wake is not None:
            self._wake.set()

    async def run(self, bus: busmod.Bus) -> None:
        """Send batches until cancelled; what is waiting when cancelled is sent first if the bus is up."""
        wake = self._wake = asyncio.Event()
        try:
            while True:
                try:
                    await asyncio.wait_for(wake.wait(), self.interval)
                except TimeoutError:
                    pass
                wake.clear()
                await self.flush(bus)
        finally:
            self._wake = None
            if self.spans and bus.connected:
                try:
                    await asyncio.shield(self.flush(bus))
                except Exception as exc:  # stopping: what cannot go now is lost, and said so
                    log.warning("spans_lost_at_stop", spans=len(self.spans), error=str(exc))

    async def flush(self, bus: busmod.Bus) -> None:
        """Publish what waits, a batch per message, while the bus is connected; on a failed publish the
        batch goes back to the front of the queue (still bounded) and the next flush tries again."""
        spans = self.spans
        while spans and bus.connected:
            taken = [spans.popleft() for _ in range(min(self.batch, len(spans)))]
            payload = busmod.encode(SpanBatch(proxy_id=self.proxy_id, spans=taken))
            try:
                await bus.publish(self.subject, payload)
            except busmod.PayloadTooLarge as exc:
                self.failed += len(taken)
                log.warning("span batch refused by the bus: dropped", spans=len(taken), error=str(exc))
                continue
            except Exception as exc:
                room = self.max_queue - len(spans)
                back = taken[-room:] if room > 0 else []
                self.dropped += len(taken) - len(back)
                spans.extendleft(reversed(back))
                log.warning("span batch not sent: kept for the next flush", spans=len(back), error=str(exc))
                return
            self.sent += len(taken)

    def stats(self) -> dict[str, Any]:
        return {"subject": self.subject, "queued": len(self.spans), "sent": self.sent, "dropped": self.dropped,
                "failed": self.failed, "batch": self.batch, "max_queue": self.max_queue,
                "flush_interval_s": self.interval}

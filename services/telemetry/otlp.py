"""Export of the spans the telemetry service receives to an OpenTelemetry collector over OTLP/HTTP (binary
protobuf, POST to e.g. http://collector:4318/v1/traces), with OpenTelemetry's official `opentelemetry-proto`
types (ExportTraceServiceRequest), as the OTLP specification (opentelemetry.io/docs/specs/otlp/) describes.

Spans wait in a bounded queue (`max_queue`; past it new spans are dropped and counted) and go in batches of at
most `batch` every second, or at once when a batch is full. A request that fails with a retryable status
(429, 502, 503, 504) or a connection error is tried again up to RETRIES times with a growing pause, then
dropped and counted; other statuses drop the batch at once (the collector refused it as malformed).

Zipkin -> OTLP: ids as bytes (a 64-bit trace id padded to 128 bits with leading zeros), times in ns, kind
mapped, tags as string attributes, annotations as events, the tag `error` as an error status, and the local
endpoint's service name as the resource's `service.name`.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from proto.observations import Span
from runtime.log import get_logger

log = get_logger("telemetry.otlp")
RETRIES = 3
RETRYABLE = frozenset((429, 502, 503, 504))
_KINDS = {"CLIENT": trace_pb2.Span.SPAN_KIND_CLIENT, "SERVER": trace_pb2.Span.SPAN_KIND_SERVER,
          "PRODUCER": trace_pb2.Span.SPAN_KIND_PRODUCER, "CONSUMER": trace_pb2.Span.SPAN_KIND_CONSUMER}


def _attr(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def to_otlp(span: Span) -> trace_pb2.Span:
    start = (span.timestamp or 0) * 1000
    out = trace_pb2.Span(
        trace_id=bytes.fromhex(span.trace_id.rjust(32, "0")), span_id=bytes.fromhex(span.id),
        parent_span_id=bytes.fromhex(span.parent_id) if span.parent_id else b"", name=span.name or "",
        kind=_KINDS.get(span.kind or "", trace_pb2.Span.SPAN_KIND_INTERNAL),
        start_time_unix_nano=start, end_time_unix_nano=start + (span.duration or 0) * 1000,
        attributes=[_attr(k, v) for k, v in sorted((span.tags or {}).items())],
        events=[trace_pb2.Span.Event(time_unix_nano=a.timestamp * 1000, name=a.value) for a in span.annotations or ()],
    )
    if span.remote_endpoint is not None and span.remote_endpoint.service_name:
        out.attributes.append(_attr("peer.service", span.remote_endpoint.service_name))
    if span.tags and "error" in span.tags:
        out.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        out.status.message = span.tags["error"]
    return out


def export_request(spans: list[Span]) -> ExportTraceServiceRequest:
    """One request: a ResourceSpans per service name, spans in the order given."""
    by_service: dict[str, list[trace_pb2.Span]] = {}
    for span in spans:
        service = (span.local_endpoint.service_name if span.local_endpoint else None) or "unknown"
        by_service.setdefault(service, []).append(to_otlp(span))
    request = ExportTraceServiceRequest()
    for service, converted in by_service.items():
        request.resource_spans.append(trace_pb2.ResourceSpans(
            resource=Resource(attributes=[_attr("service.name", service)]),
            scope_spans=[trace_pb2.ScopeSpans(scope=InstrumentationScope(name="isthmus"), spans=converted)]))
    return request


class OtlpExporter:
    def __init__(self, endpoint: str, max_queue: int = 10_000, batch: int = 512, timeout: float = 10.0,
                 flush_every: float = 1.0, retry_pause: float = 0.5) -> None:
        self.endpoint = endpoint
        self.batch = batch
        self.timeout = timeout
        self.flush_every = flush_every
        self.retry_pause = retry_pause
        self.queue: deque[Span] = deque()
        self.max_queue = max_queue
        self.exported = 0
        self.dropped = 0  # spans dropped: queue full, or their batch failed for good
        self._wake = asyncio.Event()

    def offer(self, spans: list[Span]) -> None:
        """Queue spans for export (never waits); what does not fit in the queue is dropped and counted."""
        room = self.max_queue - len(self.queue)
        self.queue.extend(spans[:max(0, room)])
        self.dropped += max(0, len(spans) - max(0, room))
        if len(self.queue) >= self.batch:
            self._wake.set()

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_every)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                while self.queue:
                    batch = [self.queue.popleft() for _ in range(min(self.batch, len(self.queue)))]
                    await self._send(session, batch)

    async def _send(self, session: aiohttp.ClientSession, batch: list[Span]) -> None:
        body = export_request(batch).SerializeToString()
        for attempt in range(RETRIES + 1):
            problem = ""
            try:
                async with session.post(self.endpoint, data=body,
                                        headers={"Content-Type": "application/x-protobuf"}) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.exported += len(batch)
                        return
                    problem = f"HTTP {response.status}"
                    if response.status not in RETRYABLE:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
            if attempt < RETRIES:
                await asyncio.sleep(self.retry_pause * 2 ** attempt)
        self.dropped += len(batch)
        log.warning("otlp export failed; spans dropped", endpoint=self.endpoint, spans=len(batch), error=problem)

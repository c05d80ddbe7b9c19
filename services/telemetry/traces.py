"""Recent traces in bounded memory, queried as Zipkin's v2 API reads them (zipkin-api's zipkin2-api.yaml).

Spans come from the sidecars' SpanBatch messages and from POST /api/v2/spans. Each is checked (ids as Zipkin
requires them: lower-case hex, trace 16 or 32 digits, span and parent 16; times in microseconds, not
negative; bounded text, tags and annotations; an endpoint's ipv4/ipv6 that is not such an address is left
out, as Zipkin's Endpoint builder leaves it out) and kept under its trace; when more than `max_spans` spans,
`max_traces` traces or `max_bytes` bytes of spans (each counted as its JSON) are held, the oldest traces (by
first arrival) go whole: a span may be ~2 MB within the per-span bounds, so a count alone bounds no memory.
Service and span names are lower-cased as Zipkin's collector does.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter, OrderedDict

import msgspec

from proto.observations import Span

KINDS = frozenset(("CLIENT", "SERVER", "PRODUCER", "CONSUMER"))
MAX_NAME = 1024  # characters of a span or service name
MAX_TAGS = 128  # tags per span
MAX_TAG_KEY = 256
MAX_TAG_VALUE = 8192
MAX_ANNOTATIONS = 128
MAX_MICROS = 2**63 - 1
_TRACE_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_size = msgspec.json.Encoder().encode


def _address(text: str | None, version: int) -> str | None:
    """The address if `text` is an IPv4 (version 4) or IPv6 address, else None (Zipkin drops it)."""
    if text is None or len(text) > 45:
        return None
    try:
        return text if ipaddress.ip_address(text).version == version else None
    except ValueError:
        return None


class SpanRefused(ValueError):
    """What is wrong with a span, as a POST's 400 says it."""


def normalize_trace_id(trace_id: str) -> str:
    """Lower-case; a 32-digit id whose high half is zero is the same trace as its low 16 digits (Zipkin)."""
    trace_id = trace_id.lower()
    return trace_id[16:] if len(trace_id) == 32 and trace_id.startswith("0" * 16) else trace_id


def check(span: Span) -> Span:
    """The span with ids and names normalised; SpanRefused naming the first problem."""
    trace_id = normalize_trace_id(span.trace_id)
    if not _TRACE_ID.fullmatch(trace_id):
        raise SpanRefused(f"traceId {span.trace_id[:40]!r} is not 16 or 32 hex digits")
    if not _SPAN_ID.fullmatch(span.id.lower()):
        raise SpanRefused(f"id {span.id[:40]!r} is not 16 hex digits")
    if span.parent_id is not None and not _SPAN_ID.fullmatch(span.parent_id.lower()):
        raise SpanRefused(f"parentId {span.parent_id[:40]!r} is not 16 hex digits")
    if span.kind is not None and span.kind not in KINDS:
        raise SpanRefused(f"kind {span.kind[:20]!r} is not one of {', '.join(sorted(KINDS))}")
    for name, value in (("timestamp", span.timestamp), ("duration", span.duration)):
        if value is not None and not 0 <= value <= MAX_MICROS:
            raise SpanRefused(f"{name} {value} is not 0..2^63-1 microseconds")
    if span.name is not None and len(span.name) > MAX_NAME:
        raise SpanRefused(f"name is {len(span.name)} characters, more than {MAX_NAME}")
    for side, endpoint in (("localEndpoint", span.local_endpoint), ("remoteEndpoint", span.remote_endpoint)):
        if endpoint is not None and endpoint.service_name is not None and len(endpoint.service_name) > MAX_NAME:
            raise SpanRefused(f"{side}.serviceName is longer than {MAX_NAME} characters")
        if endpoint is not None and endpoint.port is not None and not 0 <= endpoint.port <= 65535:
            raise SpanRefused(f"{side}.port {endpoint.port} is not 0..65535")
    if span.tags is not None:
        if len(span.tags) > MAX_TAGS:
            raise SpanRefused(f"{len(span.tags)} tags, more than {MAX_TAGS}")
        for key, value in span.tags.items():
            if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
                raise SpanRefused(f"tag {key[:40]!r} is longer than {MAX_TAG_KEY} (key) or {MAX_TAG_VALUE} (value)")
    if span.annotations is not None:
        if len(span.annotations) > MAX_ANNOTATIONS:
            raise SpanRefused(f"{len(span.annotations)} annotations, more than {MAX_ANNOTATIONS}")
        for annotation in span.annotations:
            if not 0 <= annotation.timestamp <= MAX_MICROS or len(annotation.value) > MAX_TAG_VALUE:
                raise SpanRefused("an annotation's timestamp is out of range or its value too long")
    changes: dict[str, object] = {"trace_id": trace_id, "id": span.id.lower()}
    if span.parent_id is not None:
        changes["parent_id"] = span.parent_id.lower()
    if span.name is not None:
        changes["name"] = span.name.lower()
    for side in ("local_endpoint", "remote_endpoint"):
        endpoint = getattr(span, side)
        if endpoint is None:
            continue
        fixed: dict[str, object] = {}
        if endpoint.service_name is not None:
            fixed["service_name"] = endpoint.service_name.lower()
        for version, field in ((4, "ipv4"), (6, "ipv6")):
            value = getattr(endpoint, field)
            if value is not None and _address(value, version) is None:
                fixed[field] = None
        if fixed:
            changes[side] = msgspec.structs.replace(endpoint, **fixed)
    return msgspec.structs.replace(span, **changes)


def service_of(span: Span) -> str:
    return (span.local_endpoint.service_name or "") if span.local_endpoint else ""


class TraceStore:
    def __init__(self, max_spans: int = 100_000, max_traces: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_spans = max_spans
        self.max_traces = max_traces
        self.max_bytes = max_bytes
        self.traces: OrderedDict[str, list[Span]] = OrderedDict()
        self.spans = 0
        self.bytes = 0  # the held spans' JSON bytes
        self._trace_bytes: dict[str, int] = {}
        self.evicted = 0
        self._names: Counter[tuple[str, str]] = Counter()  # (service, span name) -> spans held
        self._remote: Counter[tuple[str, str]] = Counter()  # (service, remote service) -> spans held

    def add(self, spans: list[Span]) -> None:
        """Keep checked spans (check() first), evicting the oldest traces past the bounds."""
        for span in spans:
            trace = self.traces.get(span.trace_id)
            if trace is None:
                trace = self.traces[span.trace_id] = []
            trace.append(span)
            size = len(_size(span))
            self._trace_bytes[span.trace_id] = self._trace_bytes.get(span.trace_id, 0) + size
            self.bytes += size
            self.spans += 1
            self._index(span, 1)
        while self.traces and (self.spans > self.max_spans or len(self.traces) > self.max_traces
                               or self.bytes > self.max_bytes):
            trace_id, gone = self.traces.popitem(last=False)
            self.spans -= len(gone)
            self.bytes -= self._trace_bytes.pop(trace_id, 0)
            self.evicted += 1
            for span in gone:
                self._index(span, -1)

    def _index(self, span: Span, by: int) -> None:
        service = service_of(span)
        if not service:
            return
        for counter, key in ((self._names, (service, span.name or "")),
                             (self._remote, (service, span.remote_endpoint.service_name or "")
                              if span.remote_endpoint else (service, ""))):
            counter[key] += by
            if counter[key] <= 0:
                del counter[key]

    def services(self) -> list[str]:
        return sorted({service for service, _ in self._names})

    def span_names(self, service: str) -> list[str]:
        service = service.lower()
        return sorted({name for s, name in self._names if s == service and name})

    def remote_services(self, service: str) -> list[str]:
        service = service.lower()
        return sorted({remote for s, remote in self._remote if s == service and remote})

    def trace(self, trace_id: str) -> list[Span] | None:
        return self.traces.get(normalize_trace_id(trace_id))

    def query(self, service: str = "", span_name: str = "", end_ts_ms: int = 0, lookback_ms: int = 0,
              min_duration_us: int = 0, max_duration_us: int = 0, limit: int = 10,
              tags: dict[str, str] | None = None, remote_service: str = "") -> list[list[Span]]:
        """Traces (newest first, at most `limit`) holding a span that matches every given criterion, within
        [end_ts - lookback, end_ts] (ms), as Zipkin's GET /api/v2/traces selects them."""
        service, span_name, remote_service = service.lower(), span_name.lower(), remote_service.lower()
        if span_name == "all":
            span_name = ""
        low, high = (end_ts_ms - lookback_ms) * 1000, end_ts_ms * 1000
        found: list[tuple[int, list[Span]]] = []
        for spans in self.traces.values():
            start = min((s.timestamp for s in spans if s.timestamp is not None), default=None)
            if start is None or not low <= start <= high:
                continue
            if any(_matches(s, service, span_name, min_duration_us, max_duration_us, tags or {}, remote_service)
                   for s in spans):
                found.append((start, spans))
        found.sort(key=lambda item: item[0], reverse=True)
        return [spans for _, spans in found[:limit]]


def _matches(span: Span, service: str, span_name: str, min_d: int, max_d: int, tags: dict[str, str],
             remote_service: str = "") -> bool:
    if service and service_of(span) != service:
        return False
    if remote_service and (span.remote_endpoint is None or span.remote_endpoint.service_name != remote_service):
        return False
    if span_name and span.name != span_name:
        return False
    if min_d and (span.duration is None or span.duration < min_d):
        return False
    if max_d and (span.duration is None or span.duration > max_d):
        return False
    for key, value in tags.items():
        span_tags = span.tags or {}
        if key not in span_tags and not any(a.value == key for a in span.annotations or ()):
            return False
        if value and span_tags.get(key) != value:
            return False
    return True

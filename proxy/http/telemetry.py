"""Telemetry: what every exchange reports once it is over. Today the access record handed to the
listener's `on_complete` (proxy/access_log.py writes it) and the span of a sampled request
(proxy/telemetry/tracer.py end_trace); metrics plug in here, observing the same exchange, so no stage has
to know about them. Called when the listener has an `on_complete` or the request carries a span
(RequestHead.trace).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.core.access import AccessRecord
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.tracer import end_trace


def report(on_complete: Callable[[AccessRecord], None] | None, head: RequestHead | None, upstream: Target | None,
           status: int, flag: str, bytes_sent: int, duration_ms: float, details: str = "",
           protocol: str = "HTTP/1.1", bytes_received: int = 0, upstream_ms: float = -1.0) -> None:
    """`upstream_ms`: ms from the start to the upstream's response head (-1: no upstream answered)."""
    if head is not None and head.trace is not None:  # a sampled request's span ends with its exchange
        end_trace(head, upstream, status, flag, bytes_sent)
    if on_complete is None:
        return
    on_complete(AccessRecord(
        head.method if head is not None else "-",
        head.host if head is not None else "-",
        head.path if head is not None else "-",
        status, flag,
        upstream.cluster if upstream is not None else "-",
        bytes_sent,
        duration_ms,
        details or (head.details if head is not None else ""),
        protocol=protocol, bytes_received=bytes_received, upstream_ms=upstream_ms, head=head, target=upstream,
    ))

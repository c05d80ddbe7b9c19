"""Telemetry: what every exchange reports once it is over. The one place an HTTP exchange reports its end
(proxy/http/exchange_end.py `_log`, for every way it ends): the listener's Istio metrics
(ServerState.metrics, proxy/telemetry/http_metrics.py), its access record (ServerState.on_complete,
proxy/access_log.py writes it) and the span of a sampled request (RequestHead.trace, proxy/telemetry/tracer.py
end_trace), so no stage has to know about them. Each observer is asked for only when it listens: with none,
nothing is computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.core.access import AccessRecord
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.tracer import end_trace

if TYPE_CHECKING:
    from proxy.http.listener_state import ServerState


def report(shared: ServerState, head: RequestHead | None, upstream: Target | None, status: int, flag: str,
           bytes_received: int, bytes_sent: int, duration_ms: float, details: str = "",
           protocol: str = "HTTP/1.1", upstream_ms: float = -1.0) -> None:
    """One exchange is over: `status` as answered (0: none, the client left), Envoy's response `flag`, request and
    response body bytes, `duration_ms` from the request's first byte to its end, Envoy's response code details,
    `upstream_ms` from the start to the upstream's response head (-1: no upstream answered)."""
    if head is not None and head.trace is not None:  # a sampled request's span ends with its exchange
        end_trace(head, upstream, status, flag, bytes_sent)
    metrics = shared.metrics
    if metrics is not None:
        metrics.record(head, upstream, status, flag, bytes_received, bytes_sent, duration_ms)
    on_complete = shared.on_complete
    if on_complete is not None:
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

"""Telemetry: what every exchange reports once it is over. The one place an HTTP exchange reports its end
(proxy/http/exchange_end.py `_log` is this `report`, for every way it ends): the listener's Istio metrics
(ServerState.metrics, proxy/telemetry/http_metrics.py), its access record (ServerState.on_complete,
proxy/access_log.py writes it) and the span of a sampled request (RequestHead.trace, proxy/telemetry/tracer.py
end_trace), so no stage has to know about them. Each observer is asked for only when it listens: with none,
nothing is computed. `report` reads the exchange itself, so no call layer or argument list stands between an
exchange's end and the metrics' record (a dozen arguments, half for the access log, which is off by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from proxy.core.access import AccessRecord
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.tracer import end_trace

if TYPE_CHECKING:
    from proxy.http.listener_state import Downstream


class Ended(Protocol):
    """An exchange at its end, as `report` reads it (proxy/http/exchange.Exchange)."""

    proto: Downstream
    head: RequestHead | None
    upstream: Target | None
    status: int  # as answered (0: none, the client left)
    flag: str  # Envoy's response flags
    bytes_received: int  # request body bytes
    bytes_sent: int  # response body bytes
    t0: float  # loop time of the request's first byte
    http11: bool
    details: str  # Envoy's response code details of a failure ("": none)
    upstream_at: float  # loop time of the upstream's response head (0.0: no upstream answered)


def report(ex: Ended, now: float = 0.0) -> None:
    """`ex` is over; `now`: the loop time it ended, if the caller read it already (0.0: read here, if needed)."""
    head = ex.head
    if head is not None and head.trace is not None:  # a sampled request's span ends with its exchange
        end_trace(head, ex.upstream, ex.status, ex.flag, ex.bytes_sent)
    proto = ex.proto
    shared = proto.shared
    metrics = shared.metrics
    on_complete = shared.on_complete
    if metrics is None and on_complete is None:
        return
    # from the request's first byte to its end
    duration_ms = ((now or proto.loop.time()) - ex.t0) * 1000.0
    if metrics is not None:
        metrics.record(head, ex.upstream, ex.status, ex.flag, ex.bytes_received, ex.bytes_sent, duration_ms)
    if on_complete is not None:
        on_complete(access_record(ex, duration_ms))


def access_record(ex: Ended, duration_ms: float) -> AccessRecord:
    """The access log's record of `ex`: `upstream_ms` from the start to the upstream's response head (-1: no
    upstream answered), the details of its failure or else those a stage gave its head."""
    head = ex.head
    upstream = ex.upstream
    return AccessRecord(
        head.method if head is not None else "-",
        head.host if head is not None else "-",
        head.path if head is not None else "-",
        ex.status, ex.flag,
        upstream.cluster if upstream is not None else "-",
        ex.bytes_sent,
        duration_ms,
        ex.details or (head.details if head is not None else ""),
        protocol="HTTP/1.1" if ex.http11 else "HTTP/1.0", bytes_received=ex.bytes_received,
        upstream_ms=(ex.upstream_at - ex.t0) * 1000.0 if ex.upstream_at else -1.0, head=head, target=upstream,
    )

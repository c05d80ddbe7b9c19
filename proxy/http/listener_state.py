"""What all connections of one listener share: its configuration, computed once, and its live connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from proxy.core.access import AccessRecord
from proxy.core.request import NO_CALLER, Caller, HeaderPicks, RequestHead
from proxy.core.target import Router, Target
from proxy.http.flow import ReadGate
from proxy.http.head import REQUEST_DROP, Mode
from proxy.http.head_budget import HeadBudget
from proxy.http.limits import DEFAULT, Limits
from proxy.http.upstream_pool import ConnectionPool
from proxy.telemetry.tracer import Tracer
from proxy.tcp.metrics import TcpMetrics
from proxy.telemetry.peer_metadata import HEADER as PEER_HEADER, PeerMetadataCache
from proxy.telemetry.trace_context import TRACE_HEADERS

OnComplete = Callable[[AccessRecord], None]
# The header names the listener's walk over a head looks at for itself (proxy/http/server.py on_headers_complete);
# any other name costs it one set lookup, unless an inbound stage asked for it (HeaderPicks).
NOTED = REQUEST_DROP | {b"host", b"content-length", b"x-request-id", PEER_HEADER} | TRACE_HEADERS


class Metrics(Protocol):
    """A listener's metrics recorder (proxy/telemetry/http_metrics.py): one call per finished exchange."""

    def record(self, head: RequestHead | None, target: Target | None, status: int, flag: str, received: int,
               sent: int, duration_ms: float) -> None: ...


class ServerState:
    """What all connections of one listener share: its configuration and the live connections."""

    __slots__ = ("router", "pool", "mode", "on_complete", "response_timeout", "keepalive_timeout",
                 "connections", "drained", "limits", "refused", "refused_logged", "caller", "retry_pick",
                 "mirror_pick", "head_budget", "app_port", "tracer", "metrics", "peer_line", "peers",
                 "tunnel_metrics", "picks")

    def __init__(self, router: Router, pool: ConnectionPool, mode: Mode, on_complete: OnComplete | None,
                 response_timeout: float | None, keepalive_timeout: float, limits: Limits = DEFAULT,
                 metrics: Metrics | None = None, peer_line: bytes | None = None,
                 peers: PeerMetadataCache | None = None) -> None:
        self.router = router
        # The router's optional parts (MeshRouter has them), looked up once rather than per request.
        self.caller: Caller = getattr(router, "caller", NO_CALLER)
        self.retry_pick = getattr(router, "retry_pick", None)
        self.mirror_pick = getattr(router, "mirror_pick", None)
        self.app_port: int = getattr(router, "app_port", 0)  # inbound: the workload port it serves (0: none)
        # inbound: the header names the router's stages read, noted in the listener's own walk (HeaderPicks)
        self.picks: HeaderPicks = getattr(router, "picks", None) or HeaderPicks()
        self.picks.bind(NOTED)
        self.pool = pool
        self.mode = mode
        self.on_complete = on_complete
        self.response_timeout = response_timeout
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[Downstream] = set()
        self.drained: asyncio.Event | None = None  # set by stop(): fired when the last connection goes
        self.limits = limits
        self.refused = 0  # connections closed at once because max_connections were open
        self.refused_logged = float("-inf")  # loop time of the last log line about them
        self.head_budget = HeadBudget(limits.max_pending_head_bytes)  # incomplete heads' bytes (head_budget.py)
        # this side's tracing stage (proxy/telemetry/tracer.py), set by the sidecar; None: trace headers go
        # through untouched and no span is made
        self.tracer: Tracer | None = None
        # telemetry (proxy/http/telemetry.py): Istio's metrics of this listener (proxy/telemetry/http_metrics.py),
        # None: none; the peer metadata exchange (proxy/telemetry/peer_metadata.py): outbound, the header line
        # this sidecar adds to requests to sidecars; inbound, the cache that reads the callers' into head.peer
        self.metrics = metrics
        self.peer_line = peer_line
        self.peers = peers
        # Istio's TCP metrics of the CONNECT tunnels (HTTPS_PROXY) through the outbound listener (proxy/tcp/metrics.py)
        self.tunnel_metrics: TcpMetrics | None = None


class Downstream(Protocol):
    """A client connection as an exchange or a CONNECT tunnel drives it (proxy/http/server.HttpProxyProtocol)."""

    shared: ServerState
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    gate: ReadGate
    client: str  # the peer's IP address
    t_begin: float  # loop time the request head being read began
    stopping: bool  # close once the active request is answered
    closing: bool
    write_paused: bool  # the client cannot take more: pause the upstream's reading
    early: bytes  # bytes read after a websocket/CONNECT head, before the tunnel is up
    tunnel: object  # the upstream side raw bytes are relayed to, once a tunnel is up
    tls: bool  # the transport seals each write as TLS records of its own (writelines joins)
    ticks: int  # writes counted for the idle timeouts (conn_guard.py)

    def write(self, data: bytes) -> None: ...
    def writelines(self, data: list[bytes]) -> None: ...
    def close(self) -> None: ...
    def shutdown(self) -> None: ...
    def exchange_done(self, ex: object, now: float = 0.0) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...

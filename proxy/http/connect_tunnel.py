"""CONNECT on the outbound listener: tunnels for apps that use the sidecar as HTTPS_PROXY (RFC 9110 9.3.6).

    ConnectExchange   a CONNECT request in the client connection's pipeline (it stands where an Exchange
                      stands: proxy/http/server.py starts it when it is first in line)
    TunnelRelay       proxy/tcp/relay.Relay whose downstream is that client connection, taken over at the 200

Where a tunnel goes: MeshRouter.connect_pick. A host the registry knows is opaque TCP to it, as Istio treats
any TCP to a service (its tcp routes, balancer and connectionPool limits apply; through a port whose
endpoint is a peer's HTTP listener, what goes through the tunnel must be HTTP). Any other host follows
outboundTrafficPolicy: ALLOW_ANY connects to the host:port asked for (PassthroughCluster, names through the
pool's DNS cache), REGISTRY_ONLY answers 502 (BlackHole, flag UH as Istio's TCP BlackHoleCluster).

Answers: `200 Connection Established` once the upstream connection is open; then the client's transport is
handed to the relay (transport.set_protocol) and bytes go both ways with the relay's flow control (a side
whose peer's write buffer is full stops being read), half-closes passing through, and its idle timeout (1 h,
Istio's TCP default, or the cluster's tcp.idleTimeout) and maxConnectionDuration. Bytes the client sent
behind the CONNECT head wait for the 200 with the client no longer read. Before the 200 a failure is an
HTTP answer and the connection closes: 400 (target not host:port), 502 BlackHole, 503 UF / UO / UH / DF.
Access log: one line per tunnel when it ends: "CONNECT host:port", status, flag, bytes to the client,
duration, cluster. The inbound listener does not take CONNECT (400).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.core.errors import BadRequest, BlackHole, ProxyError, UpstreamConnectError
from proxy.core.access import AccessRecord, upstream_of
from proxy.http.head import split_authority
from proxy.http.rescue import rescue
from proxy.outbound.passthrough import BLACKHOLE_CLUSTER
from proxy.core.target import Target
from proxy.tcp.relay import Relay, _Side
from runtime.log import get_logger

if TYPE_CHECKING:
    from proxy.http.listener_state import Downstream
    from proxy.outbound.circuit_breaker import Breaker

ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"
log = get_logger("proxy.connect")


def parse_authority(authority: bytes) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); the port is required. Raises BadRequest."""
    host, port = split_authority(authority)
    tail = authority.rpartition(b":")[2]
    if b":" not in authority or not tail.isdigit():
        raise BadRequest("CONNECT needs an authority-form target, host:port")
    return host, port


class ConnectExchange:
    """The CONNECT request; what the server protocol calls on its exchanges, for a tunnel."""

    __slots__ = ("proto", "authority", "upgrade", "conn", "req_done", "resp_done", "started", "error", "close_after",
                 "relay", "status", "gone", "t0", "taken")
    deadline = 0.0  # no response timeout for the connection's timer to check (proxy/http/conn_guard.py)

    def __init__(self, proto: Downstream, authority: bytes) -> None:
        self.proto = proto
        self.authority = authority
        self.upgrade = b"connect"  # the server keeps bytes after the head in proto.early and parses no further
        self.conn = None  # no pooled upstream connection: the server's pause_writing finds none
        self.req_done = False
        self.resp_done = False
        self.started = False
        self.error: ProxyError | None = None
        self.close_after = True  # a connection that carried a CONNECT serves nothing after it
        self.relay: TunnelRelay | None = None
        self.status = 0
        self.gone = False
        self.taken = False  # the relay owns the client's transport
        self.t0 = proto.loop.time()

    def start(self) -> None:
        self.started = True
        proto = self.proto
        try:
            host, port = parse_authority(self.authority)
            target = proto.shared.router.connect_pick(host, port, proto.client)  # type: ignore[attr-defined]
        except Exception as exc:  # BadRequest, BlackHole, NoHealthyUpstream...; anything else is our bug: 500
            if not isinstance(exc, ProxyError):
                log.exception("CONNECT failed", target=self.authority.decode("latin-1"))
            self.fail(exc)
            return
        self.relay = TunnelRelay(self, target)
        metrics = proto.shared.tunnel_metrics
        if metrics is not None:  # Istio's TCP metrics count what the tunnel carries (proxy/tcp/metrics.py)
            metrics.track(self.relay, host)
        self.relay.start()

    def feed_body(self, chunk: bytes) -> None:
        pass  # a CONNECT has no body: what follows its head is tunnel data (proto.early)

    def feed_end(self) -> None:
        self.req_done = True

    def client_gone(self) -> None:
        self.gone = True
        if self.relay is not None:
            self.relay.close()

    def fail(self, exc: BaseException) -> None:
        """Answer the CONNECT with an error, then close: nothing was tunnelled."""
        if self.resp_done:
            return
        self.resp_done = True
        self.status, flag, payload = rescue(exc, True)
        if self.gone:
            self.status, flag = 0, "DC"
        proto = self.proto
        proto.write(payload)
        target = self.relay.target if self.relay is not None else None
        cluster = target.cluster if target is not None else BLACKHOLE_CLUSTER if isinstance(exc, BlackHole) else "-"
        self.log(flag, cluster, 0)
        proto.exchange_done(self)  # type: ignore[arg-type]  # close_after: the connection closes

    def established(self, relay: TunnelRelay) -> _Side | None:
        """The upstream is connected: answer 200 and hand the client's transport to the relay (None: the
        client is gone)."""
        proto = self.proto
        transport = proto.transport
        if proto.closing or transport.is_closing():
            return None
        self.resp_done = True
        self.status = 200
        self.taken = True
        transport.write(ESTABLISHED)
        down = relay.down
        down.transport = transport
        if proto.early:  # sent behind the head: goes first
            down.early.append(proto.early)
            down.read += len(proto.early)
            proto.early = b""
        transport.set_protocol(down)
        return down

    def ended(self, relay: TunnelRelay) -> None:
        """The relay closed: after a tunnel, log it and let the server protocol forget the connection; before,
        the upstream could not be reached (or the client left): answer that."""
        metrics = self.proto.shared.tunnel_metrics
        if metrics is not None:
            metrics.closed(relay)
        if not self.taken:
            error = relay.error
            if isinstance(error, ProxyError):
                self.fail(error)
            else:
                self.fail(UpstreamConnectError(f"upstream connect error: {relay._where()}: "
                                               f"{error or 'connection closed'}"))
            return
        up = relay.up
        self.log(relay.flag, relay.target.cluster if relay.target is not None else "-", up.read if up else 0,
                 relay.down.read, relay.target)
        self.taken = False
        self.proto.connection_lost(None)  # the transport is the relay's: tell the server protocol once

    def log(self, flag: str, cluster: str, sent: int, received: int = 0, target: Target | None = None) -> None:
        """`sent`/`received`: bytes to/from the client through the tunnel; `target`: the upstream it reached."""
        on_complete = self.proto.shared.on_complete
        if on_complete is not None:
            host, peer = upstream_of(target) if target is not None else ("", "")
            on_complete(AccessRecord("CONNECT", self.authority.decode("latin-1"), "", self.status, flag, cluster,
                                     sent, (self.proto.loop.time() - self.t0) * 1000.0, bytes_received=received,
                                     upstream_host=host, upstream_peer=peer))


class TunnelRelay(Relay):
    """A Relay whose downstream is the CONNECT's client connection (no listener of its own)."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: ConnectExchange, target: Target) -> None:
        super().__init__(lambda client: target, lambda relay: exchange.ended(relay))  # type: ignore[arg-type]
        self.exchange = exchange

    async def open(self, up: _Side, target: Target) -> None:
        resolver = self.exchange.proto.shared.pool.resolver
        if resolver is None or target.tls is not None:  # a mesh endpoint, perhaps with mutual TLS: as any relay
            await super().open(up, target)
        else:  # a passthrough host's name, through the DNS cache
            await resolver.connect(self.loop, lambda: up, target.address, target.port)

    def _attach(self, up: _Side, breaker: Breaker | None) -> None:
        if self.exchange.established(self) is None:
            self.close()
            return
        super()._attach(up, breaker)
        proto = self.exchange.proto
        transport = self.down.transport
        assert transport is not None
        transport.resume_reading()
        if proto.stopping and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()  # the client half-closed before the 200


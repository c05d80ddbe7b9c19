"""Opaque TCP through the mesh: VirtualService `tcp` routes, for a database or any client that is not HTTP.

    TcpListener   one listening port; each accepted connection becomes a Relay (proxy/tcp/listener.py)
    Relay         a downstream connection and the upstream one it is paired with, bytes copied both ways

Outbound (`isthmus proxy run --tcp HOST:PORT=LOCAL_PORT`): the app connects to LOCAL_PORT to reach
HOST:PORT; each connection is routed once, when it opens (MeshRouter.tcp_pick: the host's tcp route by
weight, then the balancer), and its bytes go to the chosen endpoint's inbound TCP listener. Inbound
(`--app-tcp SERVICE_PORT=APP_PORT`): the sidecar's TCP listener for that service port relays to the app.

DestinationRule settings that apply to a TCP connection, as Envoy's tcp_proxy applies them:
tcp.maxConnections (an overflowing connection is closed at once: TCP has no pending queue), connectTimeout,
tcpKeepalive on the upstream socket, idleTimeout (no byte either way for that long: both sides are closed;
unset one hour, 0s never) and maxConnectionDuration. A connect failure counts as a gateway error for
outlierDetection. Half-closes pass through (a client's shutdown(SHUT_WR) reaches the server as EOF).
Flow control: when one side's write buffer fills, reading from the other side pauses until it drains.
Bytes a client sends before its upstream is connected are held up to EARLY_LIMIT, then reading pauses.
A listener holds at most `max_connections` relays (proxy/http/limits.py); more are closed at once.

Mutual TLS, as for HTTP, with TLS in a layer of our own (proxy/tls/bio.py) so half-closes pass: an outbound
connection to an endpoint with a sidecar is originated with the TlsOrigination its Target carries (decided
once per push: proxy/outbound/upstream_tls.py), the peer's SPIFFE ID checked before a byte is relayed
(another identity: flag UF); an inbound listener given `tls_mode` and `tls_context` accepts through a
TlsAcceptor (STRICT / PERMISSIVE / DISABLE per connection). A relay starts once its downstream connection is
made, so a TLS client is routed after its handshake.

AuthorizationPolicy on an inbound listener given `authorize` (proxy/inbound/authz/engine.py, rules compiled
for TCP): each connection is checked once, when it is accepted (after its handshake: the peer's principal is
known) and before the app is connected; a denied one is closed at once, its access-log line naming the policy
(rbac_access_denied_matched_policy[...], Envoy's connection termination details). A policy change applies to
new connections; open ones stay (Envoy's network RBAC filter decides once per connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.core.downstream import Downstream
from proxy.core.errors import ProxyError
from proxy.core.conn_policy import set_keepalive
from proxy.core.target import Target
from proxy.tls.bio import TlsLayer
from runtime.log import get_logger

if TYPE_CHECKING:
    from proxy.outbound.circuit_breaker import Breaker

log = get_logger("proxy.tcp")

DEFAULT_IDLE_TIMEOUT = 3600.0  # Istio's default tcp.idleTimeout
DEFAULT_CONNECT_TIMEOUT = 5.0
EARLY_LIMIT = 64 * 1024  # bytes read from one side before the other is connected; then reading pauses

# Picks where a new downstream connection goes (raises ProxyError when it cannot go anywhere).
Picker = Callable[[str], Target]
# AuthorizationPolicy on a new connection: (allowed, details for the access log) (proxy/inbound/authz/engine.py)
TcpCheck = Callable[[Downstream], "tuple[bool, str]"]


class _Side(asyncio.Protocol):
    """One connection of a relay; what it reads is written to the other one."""

    __slots__ = ("relay", "transport", "other", "early", "early_size", "eof", "read", "sni")

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.read = 0  # bytes read from this connection (for the access log)
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.early: list[bytes] = []  # read before the other side was connected (at most ~EARLY_LIMIT)
        self.early_size = 0
        self.eof = False  # read EOF before the other side was connected
        self.sni = ""  # the downstream side of an inbound TLS connection: its ClientHello's server name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        relay = self.relay
        if self is relay.down and relay.on_open is not None:
            relay.on_open(relay)

    def data_received(self, data: bytes) -> None:
        self.relay.last_active = self.relay.loop.time()
        self.read += len(data)
        other = self.other
        if other is None or other.transport is None:
            self.early.append(data)
            self.early_size += len(data)
            if self.early_size > EARLY_LIMIT and self.transport is not None:
                self.transport.pause_reading()  # resumed once paired
        else:
            other.transport.write(data)

    def eof_received(self) -> bool:
        other = self.other
        if other is None or other.transport is None:
            self.eof = True
        elif other.transport.can_write_eof():
            other.transport.write_eof()
        self.relay.half_closed(self)
        return True  # keep our write side open: the peer may still answer

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.relay.close()


class Relay:
    """A downstream connection and its upstream: routed once, then bytes both ways until either closes."""

    __slots__ = ("loop", "pick", "down", "up", "target", "holds_slot", "last_active", "timer", "deadline",
                 "closed", "connecting", "halves", "on_close", "started", "flag", "error", "on_open", "details",
                 "caller", "peer", "seen")

    def __init__(self, pick: Picker, on_close: Callable[[Relay], None],
                 on_open: Callable[[Relay], None] | None = None) -> None:
        """`on_open`: called when the downstream connection is made (after its TLS handshake, if any)."""
        self.on_open = on_open
        self.loop = asyncio.get_running_loop()
        self.pick = pick
        self.down = _Side(self)
        self.up: _Side | None = None
        self.target: Target | None = None
        self.holds_slot = False  # a maxConnections slot of the target's breaker
        self.last_active = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None  # idleTimeout check
        self.deadline: asyncio.TimerHandle | None = None  # maxConnectionDuration
        self.closed = False
        self.connecting: asyncio.Task[None] | None = None
        self.halves = 0  # sides that read EOF: at two, the relay is done
        self.on_close = on_close
        self.started = self.last_active
        self.flag = "-"  # Envoy's response flag for the access log: UO, UF, NR, UH, or "-"
        self.error: BaseException | None = None  # why the upstream could not be reached, if it could not
        self.details = ""  # Envoy's connection termination details for the access log (authorization)
        self.caller: Downstream | None = None  # an inbound connection's caller, read at accept (authz, access log)
        # metrics (proxy/tcp/metrics.py): the Peer its labels are, and the (received, sent) bytes counted so far
        self.peer: object = None
        self.seen: tuple[int, int] | None = None

    def start(self) -> None:
        self.connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        down = self.down
        peer = down.transport.get_extra_info("peername") if down.transport is not None else None
        client = peer[0] if isinstance(peer, tuple) else ""
        try:
            target = self.target = self.pick(client)
            breaker = target.breaker
            if breaker is not None:
                breaker.open_connection()
                self.holds_slot = True
            timeout = breaker.connect_timeout if breaker is not None and breaker.connect_timeout else None
            up = _Side(self)
            async with asyncio.timeout(timeout or DEFAULT_CONNECT_TIMEOUT):
                await self.open(up, target)
        except (ProxyError, OSError, TimeoutError) as exc:  # ssl.SSLError (a peer's wrong identity) is an OSError
            self.error = exc
            self.flag = exc.flag if isinstance(exc, ProxyError) else "UF"
            if self.target is not None and self.target.outlier is not None and not isinstance(exc, ProxyError):
                self.target.outlier.report(self.target.endpoint, 0)  # a connect failure: a gateway error
            log.warning("tcp connection not relayed", target=self._where(), error=str(exc) or type(exc).__name__)
            self.close()
            return
        if self.closed:  # the client left while we connected
            if up.transport is not None:
                up.transport.close()
            return
        if target.outlier is not None:
            target.outlier.report(target.endpoint, 200)
        self._attach(up, breaker)

    async def open(self, up: _Side, target: Target) -> None:
        """Connect `up` to the target (a subclass may resolve names its own way); with the target's `tls`,
        mutual TLS to its sidecar, whose SPIFFE ID must be the expected one (else PeerIdentityMismatch, an
        ssl.SSLError, logged with both identities)."""
        tls = target.tls
        if tls is None:
            await self.loop.create_connection(lambda: up, target.address, target.port)
            return
        context = tls.context()  # type: ignore[attr-defined]
        if context is None:
            raise OSError("this workload has no certificate yet for mutual TLS")
        # TLS in a layer of our own (proxy/tls/bio.py): the loop's TLS transports cannot pass a half-close
        layer = TlsLayer(context, False, tls.sni or None, up)  # type: ignore[attr-defined]
        await self.loop.create_connection(lambda: layer, target.address, target.port)
        try:
            await layer.handshake
        except BaseException:
            if not layer.handshake.done() or layer.handshake.cancelled():
                layer.abort()  # timed out or cancelled; a refused handshake ends itself (its alert, proxy/tls/bio.py)
            raise
        try:
            tls.check(layer.peercert(), f"{target.address}:{target.port}")  # type: ignore[attr-defined]
        except BaseException:
            layer.close()  # another workload's identity: close_notify (no alert can name it after the handshake)
            raise

    def _attach(self, up: _Side, breaker: Breaker | None) -> None:
        self.up = up
        down = self.down
        down.other, up.other = up, down
        assert up.transport is not None
        for src, dst in ((down, up), (up, down)):  # what either side sent before they were paired
            if dst.transport is None:
                continue
            if src.early:
                # one write: a TLS transport would seal each writelines item as a TLS record of its own
                dst.transport.write(b"".join(src.early))
                src.early = []
                if src.early_size > EARLY_LIMIT and src.transport is not None:
                    src.transport.resume_reading()
                src.early_size = 0
            if src.eof and dst.transport.can_write_eof():
                dst.transport.write_eof()
        idle, duration = DEFAULT_IDLE_TIMEOUT, 0.0
        if breaker is not None:  # the cluster's DestinationRule connectionPool
            if breaker.conn_policy is not None and breaker.conn_policy.keepalive is not None:
                sock = up.transport.get_extra_info("socket")
                if sock is not None:
                    set_keepalive(sock, *breaker.conn_policy.keepalive)
            if breaker.tcp_idle_timeout is not None:
                idle = breaker.tcp_idle_timeout
            duration = breaker.max_duration
        if duration:
            self.deadline = self.loop.call_later(duration, self.close)
        if idle:
            self.timer = self.loop.call_later(idle, self._check_idle, idle)

    def _check_idle(self, idle: float) -> None:
        self.timer = None
        due = self.last_active + idle
        if self.loop.time() >= due:
            log.info("tcp connection idle: closed", target=self._where(), idle_timeout_s=idle)
            self.close()
        elif not self.closed:
            self.timer = self.loop.call_at(due, self._check_idle, idle)

    def half_closed(self, side: _Side) -> None:
        self.halves += 1
        if self.halves >= 2:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for handle in (self.timer, self.deadline):
            if handle is not None:
                handle.cancel()
        self.timer = self.deadline = None
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        for side in (self.down, self.up):
            if side is not None and side.transport is not None:
                side.transport.close()
        if self.holds_slot and self.target is not None and self.target.breaker is not None:
            self.holds_slot = False
            self.target.breaker.leave()
        self.on_close(self)

    def duration_ms(self) -> float:
        return (self.loop.time() - self.started) * 1000.0

    def _where(self) -> str:
        target = self.target
        return f"{target.address}:{target.port} ({target.cluster})" if target is not None else "-"

"""A listening port for opaque TCP (proxy/tcp/relay.py has what a connection does once accepted).

    TcpListener(host, port, pick, name, ...)   start() / stop(); each accepted connection becomes a Relay

Bounded: at most `max_connections` relays (proxy/http/limits.py); more are closed at once (_Refused), logged
at most every 10 s. An inbound listener given `tls_mode` and `tls_context` accepts through a TlsAcceptor;
given `authorize`, each accepted connection is checked against the AuthorizationPolicies in force before the
app is connected (relay.py's docstring says how).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from proxy.core.access import AccessRecord, OnComplete, upstream_of
from proxy.core.downstream import Downstream
from proxy.tcp.metrics import TcpMetrics
from proxy.tcp.relay import Picker, Relay, TcpCheck
from proxy.tls.acceptor import TlsAcceptor
from proxy.tls.listen import listening_socket
from proxy.tls.peer import peer_principal
from runtime.log import get_logger

log = get_logger("proxy.tcp")


class TcpListener:
    """A listening port whose connections are relayed to where `pick` says."""

    def __init__(self, host: str, port: int, pick: Picker, name: str, target: str = "",
                 access_log: OnComplete | None = None, max_connections: int = 10_000,
                 tls_mode: Callable[[], str] | None = None,
                 tls_context: Callable[[], ssl.SSLContext | None] | None = None,
                 authorize: Callable[[], TcpCheck | None] | None = None, app_port: int = 0,
                 metrics: TcpMetrics | None = None) -> None:
        """`tls_mode` and `tls_context` (an inbound listener): accept through a TlsAcceptor (its `acceptor`).
        `authorize`: the AuthorizationPolicy check in force (None: none), asked per accepted connection;
        `app_port`: the workload port this listener serves (destination.port for it); `metrics`: Istio's TCP
        metrics of this listener's direction (proxy/tcp/metrics.py), None: none."""
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.pick = pick
        self.name = name  # for logs: "outbound reviews:9080" or "inbound 5432"
        self.target = target  # what a connection here reaches, for the access log: "db:5432"
        self.access_log = access_log  # called with each ended connection's AccessRecord; set again on a push
        self.relays: set[Relay] = set()
        self.max_connections = max_connections  # 0: unlimited
        self.refused = 0
        self._refused_logged = float("-inf")
        self._server: asyncio.Server | None = None
        self.tls_mode, self.tls_context = tls_mode, tls_context
        self.acceptor: TlsAcceptor | None = None
        self.authorize, self.app_port = authorize, app_port
        self.denied = 0  # connections closed by an AuthorizationPolicy
        self.metrics = metrics
        self.asked = target.rpartition(":")[0]  # the host a connection here asks for ("db"), for its labels

    def sweep_metrics(self) -> None:
        """Before metrics are read: open connections' bytes so far (proxy/tcp/metrics.py)."""
        if self.metrics is not None:
            self.metrics.sweep(self.relays, self.asked)

    def _closed(self, relay: Relay) -> None:
        self.relays.discard(relay)
        if self.metrics is not None:
            self.metrics.closed(relay, self.asked)
        access_log = self.access_log
        if access_log is not None:
            access_log(tcp_record(relay, self.target))

    def _accept(self) -> asyncio.Protocol:
        if self.max_connections and len(self.relays) >= self.max_connections:
            return _Refused(self)
        return Relay(self.pick, self._closed, self._opened).down

    def _opened(self, relay: Relay) -> None:
        """The downstream connection is made (a TLS one has shaken hands): authorize it, hold it, route it."""
        self.relays.add(relay)
        if self.tls_mode is not None:  # inbound: who calls, read while the connection is open (for authz, the log)
            relay.caller = self._caller(relay)
        if self.metrics is not None:
            self.metrics.opened(relay)
        check = self.authorize() if self.authorize is not None else None
        if check is not None and not self._authorized(relay, check):
            return
        relay.start()

    def _caller(self, relay: Relay) -> Downstream:
        """The inbound connection's caller: its mTLS principal, addresses, the app port it reaches, its SNI."""
        transport = relay.down.transport
        assert transport is not None
        peer, local = transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        return Downstream(peer_principal(transport), peer[0] if isinstance(peer, tuple) else "",
                          local[0] if isinstance(local, tuple) else "",
                          self.app_port or (local[1] if isinstance(local, tuple) else 0), relay.down.sni)

    def _authorized(self, relay: Relay, check: TcpCheck) -> bool:
        """Run the policy check on the new connection; a denied one is closed (and logged by _closed)."""
        ds = relay.caller if relay.caller is not None else self._caller(relay)
        allowed, relay.details = check(ds)
        if allowed:
            return True
        self.denied += 1
        relay.close()  # the app was never connected: what the client sent is dropped, as Envoy's NoFlush close
        return False

    async def start(self) -> None:
        if self.tls_mode is not None and self.tls_context is not None:
            sock = listening_socket(self.host, self.port)
            self.port = sock.getsockname()[1]
            self.acceptor = TlsAcceptor(sock, self._accept, self.tls_mode, self.tls_context, name=self.name,
                                        layered=True)
            self.acceptor.start()
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        elif self.acceptor is not None and self.acceptor.accepting:
            self.acceptor.close()
        else:
            return
        for relay in list(self.relays):
            relay.close()
        if server is not None:
            await server.wait_closed()


def tcp_record(relay: Relay, target: str) -> AccessRecord:
    """The access record of a relayed connection that ended: `target` what it reached ("db:5432"); bytes sent
    are those to the client, received those from it; inbound, the caller (its mTLS principal) read at accept."""
    up = relay.up
    host, peer_id = upstream_of(relay.target) if relay.target is not None and up is not None else ("", "")
    return AccessRecord("-", target, "", 0, relay.flag, relay.target.cluster if relay.target is not None else "-",
                        up.read if up is not None else 0, relay.duration_ms(), relay.details, protocol="TCP",
                        bytes_received=relay.down.read, upstream_host=host, upstream_peer=peer_id,
                        downstream=relay.caller)


class _Refused(asyncio.Protocol):
    """A connection over the listener's max_connections: closed at once, logged at most every 10 s."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
        listener = self.listener
        listener.refused += 1
        now = asyncio.get_running_loop().time()
        if now - listener._refused_logged >= 10.0:
            listener._refused_logged = now
            log.warning("connection limit reached: new connections closed", listener=listener.name,
                        max_connections=listener.max_connections, refused_total=listener.refused)

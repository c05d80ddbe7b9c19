"""One listening socket (the outbound proxy port or the inbound port): makes a client connection protocol
(proxy/http/server.py) per accepted connection, all sharing one ServerState (proxy/http/listener_state.py).

With `tls_mode` and `tls_context` (the inbound listener of a sidecar), connections are accepted by a
TlsAcceptor (proxy/tls/acceptor.py): mutual TLS, plaintext or both per PeerAuthentication's mode, asked per
connection. Without them (the outbound listener), the loop's plain server."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from proxy.core.target import Router
from proxy.http.head import Mode
from proxy.http.limits import DEFAULT, Limits
from proxy.http.listener_state import Metrics, OnComplete, ServerState
from proxy.http.server import HttpProxyProtocol
from proxy.http.upstream_pool import ConnectionPool
from proxy.telemetry.peer_metadata import PeerMetadataCache
from proxy.tls.acceptor import TlsAcceptor
from proxy.tls.listen import listening_socket

__all__ = ["Listener", "serve"]


class Listener:
    """One listening socket (the outbound proxy port or the inbound port) with start/stop."""

    def __init__(self, host: str, port: int, router: Router, pool: ConnectionPool, mode: Mode | str, *,
                 on_complete: OnComplete | None = None, response_timeout: float | None = None,
                 keepalive_timeout: float = 60.0, backlog: int = 1024, limits: Limits = DEFAULT,
                 tls_mode: Callable[[], str] | None = None,
                 tls_context: Callable[[], ssl.SSLContext | None] | None = None, metrics: Metrics | None = None,
                 peer_line: bytes | None = None, peers: PeerMetadataCache | None = None,
                 tls_by_sni: bool = False) -> None:
        """`tls_by_sni`: `tls_context(sni)` picks the context per ClientHello (TlsAcceptor's by_sni).
        `metrics`: Istio's metrics recorder of this listener; `peer_line` (outbound) / `peers` (inbound): the
        peer metadata exchange (proxy/telemetry/peer_metadata.py); None: none."""
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.backlog = backlog
        self.state = ServerState(router, pool, Mode(mode), on_complete, response_timeout, keepalive_timeout,
                                 limits, metrics, peer_line, peers)
        self._server: asyncio.Server | None = None
        self.tls_mode, self.tls_context = tls_mode, tls_context
        self.tls_by_sni = tls_by_sni  # tls_context takes the SNI (a gateway's TLS port: proxy/gateway/)
        self.acceptor: TlsAcceptor | None = None  # with tls_mode: what accepts (its stats: the admin port)
        # with tls_mode: makes each accepted connection's protocol (a gateway port may relay some opaque: proxy/
        # gateway/main.py); None: an HTTP connection of this listener
        self.factory: Callable[[], asyncio.Protocol] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.state
        if self.tls_mode is not None and self.tls_context is not None:
            sock = listening_socket(self.host, self.port, self.backlog)
            self.port = sock.getsockname()[1]
            self.acceptor = TlsAcceptor(sock, self.factory or (lambda: HttpProxyProtocol(state)), self.tls_mode,
                                        self.tls_context,
                                        name=state.mode.value, by_sni=self.tls_by_sni)
            self.acceptor.start()
            return
        self._server = await loop.create_server(
            lambda: HttpProxyProtocol(state), self.host, self.port, reuse_address=True, backlog=self.backlog
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish for up to `grace` seconds, then cut the rest."""
        server, self._server = self._server, None
        acceptor = self.acceptor  # kept after stop: its stats stay readable
        if server is not None:
            server.close()
        elif acceptor is not None and acceptor.accepting:
            acceptor.close()  # the listening socket, and connections not yet handed over
        else:
            return
        state = self.state
        state.drained = asyncio.Event()
        for proto in list(state.connections):
            proto.shutdown()
        if state.connections:
            try:
                await asyncio.wait_for(state.drained.wait(), grace)
            except TimeoutError:
                for proto in list(state.connections):
                    proto.transport.abort()
        if server is not None:
            await server.wait_closed()


async def serve(host: str, port: int, router: Router, pool: ConnectionPool, mode: Mode | str,
                on_complete: OnComplete | None = None, **options: object) -> Listener:
    """Start a listener; `options` are Listener's keywords (response_timeout, keepalive_timeout, limits...)."""
    listener = Listener(host, port, router, pool, mode, on_complete=on_complete, **options)  # type: ignore[arg-type]
    await listener.start()
    return listener

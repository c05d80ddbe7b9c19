"""The downstream side: one asyncio.Protocol per client connection, and the listener that makes them.

The same protocol serves both listeners; only how the request head is read differs (head.Mode).
Requests on a connection form a pipeline answered in order: the first is the active Exchange
(proxy/http/exchange.py), later ones wait with the client's reading paused. Shape after uvicorn's
protocols/http/httptools_impl.py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

import httptools

from proxy.errors import BadRequest
from proxy.http.connect_tunnel import ConnectExchange
from proxy.http.exchange import AccessRecord, Exchange
from proxy.http.flow import PEER_FULL, PIPELINE, ReadGate
from proxy.http.head import Mode, connection_tokens, new_request_id, resolve
from proxy.http.upstream import ConnectionPool, UpstreamConnection
from proxy.outbound.target import RequestHead, Router

__all__ = ["AccessRecord", "HttpProxyProtocol", "Listener", "Mode", "ServerState", "serve"]

OnComplete = Callable[[AccessRecord], None]
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class ServerState:
    """What all connections of one listener share: its configuration and the live connections."""

    __slots__ = ("router", "pool", "mode", "on_complete", "response_timeout", "keepalive_timeout",
                 "connections", "drained")

    def __init__(self, router: Router, pool: ConnectionPool, mode: Mode, on_complete: OnComplete | None,
                 response_timeout: float | None, keepalive_timeout: float) -> None:
        self.router = router
        self.pool = pool
        self.mode = mode
        self.on_complete = on_complete
        self.response_timeout = response_timeout
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[HttpProxyProtocol] = set()
        self.drained: asyncio.Event | None = None  # set by stop(): fired when the last connection goes


class HttpProxyProtocol(asyncio.Protocol):
    __slots__ = (
        # shared
        "shared", "loop", "mode",
        # timeouts
        "keepalive_handle", "idle_since",
        # per-connection
        "transport", "parser", "gate", "write_paused", "closing", "stopping", "broken", "active",
        "pipeline", "advancing", "client",
        # websocket tunnel (after the upstream's 101): the upstream connection, and client bytes read early
        "tunnel", "early",
        # per-request (the one being parsed)
        "current", "url", "headers",
    )

    def __init__(self, shared: ServerState) -> None:
        # shared
        self.shared = shared
        self.loop = asyncio.get_running_loop()
        self.mode = shared.mode
        # timeouts
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        # per-connection
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpRequestParser(self)
        self.gate: ReadGate = None  # type: ignore[assignment]
        self.write_paused = False
        self.closing = False
        self.stopping = False  # listener stopping or client half-closed: close once idle
        self.broken = False  # unparseable input seen: read no further
        self.active: Exchange | None = None
        self.pipeline: deque[Exchange] = deque()
        self.advancing = False
        self.client = ""  # the peer's IP, once per connection (consistentHash useSourceIp)
        self.tunnel: UpstreamConnection | None = None
        self.early = b""
        # per-request
        self.current: Exchange | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else ""
        self.gate = ReadGate(self.transport)
        self.shared.connections.add(self)
        self._arm_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.tunnel is not None:
            self.tunnel.transport.close()  # after what is buffered for it has been sent
        shared = self.shared
        shared.connections.discard(self)
        if shared.drained is not None and not shared.connections:
            shared.drained.set()
        if self.keepalive_handle is not None:
            self.keepalive_handle.cancel()
            self.keepalive_handle = None
        if self.active is not None:
            self.active.client_gone()
            self.active = None
        self.pipeline.clear()
        self.current = None

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:  # CONNECT or a non-websocket Upgrade: rejected already
            ex = self.active or (self.pipeline[-1] if self.pipeline else None)
            if ex is not None and ex.upgrade is not None and not ex.resp_done:
                # websocket: bytes after the head wait for the upstream's 101; nothing more is parsed
                self.early = data[exc.args[0]:] if exc.args else b""
                self.broken = True
                self.gate.pause(PIPELINE)
            else:
                self._stop_reading()
        except httptools.HttpParserError as exc:
            self._malformed(exc)

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            return None  # either side closing ends the tunnel (connection_lost closes the upstream)
        if self.active is None and not self.pipeline:
            return None
        self.stopping = True  # half-closed after its requests: answer them, then close
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None and self.active.conn is not None:
            self.active.conn.gate.pause(PEER_FULL)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None and self.active.conn is not None:
            self.active.conn.gate.resume(PEER_FULL)

    # --- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.broken:
            return
        parser = self.parser
        method = parser.get_method()
        if method == b"CONNECT" and self.mode is Mode.OUTBOUND:  # HTTPS_PROXY tunnels (proxy/http/connect_tunnel.py)
            tunnel = self.current = ConnectExchange(self, self.url)  # type: ignore[assignment]
            self.pipeline.append(tunnel)  # type: ignore[arg-type]
            if self.active is None:
                self._advance()
            else:
                self.gate.pause(PIPELINE)
            return
        http11 = parser.get_http_version() == "1.1"
        keep_alive = http11 and parser.should_keep_alive()  # HTTP/1.0 clients: close after each
        headers = self.headers
        host = None
        has_body = chunked = expect = has_id = False
        drop = None
        for name, value in headers:
            if name == b"host":
                if host is None:
                    host = value
            elif name == b"content-length":
                has_body = int(value) > 0  # llhttp has validated it
            elif name == b"transfer-encoding":
                has_body = chunked = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
            elif name == b"x-request-id":
                has_id = True
            elif name == b"connection":
                drop = connection_tokens(value)
        head = None
        error: BadRequest | None = None
        target = self.url
        upgrade = None
        if parser.should_upgrade() and method == b"GET":
            upgrade = next((v for n, v in headers if n == b"upgrade"), None)
            if upgrade is not None and upgrade.strip().lower() != b"websocket":
                upgrade = None
        if parser.should_upgrade() and upgrade is None:
            error = BadRequest("CONNECT is not supported: send plain HTTP requests through this proxy"
                               if method == b"CONNECT" else "protocol upgrade is not supported")
        else:
            try:
                host_s, port, target, host_override = resolve(self.mode, target, host)
            except BadRequest as exc:
                error = exc
            else:
                if host_override is not None:
                    headers = [h for h in headers if h[0] != b"host"]
                    headers.append((b"host", host_override))
                if not has_id:
                    headers.append((b"x-request-id", new_request_id()))
                head = RequestHead(_METHODS.get(method) or method.decode("latin-1"), host_s, port,
                                   target.decode("latin-1"), headers, self.client)
        ex = Exchange(self, head, method, target, headers, drop, has_body, chunked, http11,
                      keep_alive and error is None and upgrade is None, expect, error)
        ex.upgrade = upgrade
        self.current = ex
        self.pipeline.append(ex)
        if error is not None:
            self._stop_reading()  # nothing after a request we cannot serve is answered
        if self.active is None:
            self._advance()
        else:
            self.gate.pause(PIPELINE)

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.feed_body(body)

    def on_message_complete(self) -> None:
        ex = self.current
        if ex is not None:
            self.current = None
            ex.feed_end()

    # --- used by Exchange -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closing:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if not self.closing:
            self.transport.writelines(data)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()  # after what is buffered has been sent

    def exchange_done(self, ex: Exchange) -> None:
        if ex is self.active:
            self.active = None
        if ex.close_after:
            self.close()
        elif not self.advancing:
            self._advance()

    def shutdown(self) -> None:
        """Listener stopping: finish what is in flight, then close."""
        self.stopping = True
        if self.active is None and not self.pipeline:
            self.close()

    # --- internals --------------------------------------------------------------------------------

    def _advance(self) -> None:
        # A loop, not recursion: a pipeline of requests answered synchronously (404s) must not nest.
        self.advancing = True
        try:
            while self.active is None and self.pipeline and not self.closing:
                ex = self.active = self.pipeline.popleft()
                ex.start()
        finally:
            self.advancing = False
        if self.active is None and not self.closing:
            self.gate.resume(PIPELINE)
            if self.stopping:
                self.close()
            else:
                self._arm_keepalive()

    def _malformed(self, exc: httptools.HttpParserError) -> None:
        ex = self.current
        self._stop_reading()
        error = BadRequest("malformed request: %s" % (exc.args[0] if exc.args else "parse error"))
        if ex is not None and not ex.req_done:  # the body of a request in progress is bad
            self.current = None
            ex.error = error
            ex.close_after = True
            if ex.started:
                ex.fail(error)
            return
        self.pipeline.append(Exchange(self, None, b"-", b"", [], None, False, False, True, False, False,
                                      error))
        if self.active is None:
            self._advance()

    def _stop_reading(self) -> None:
        self.broken = True
        self.current = None
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def _arm_keepalive(self) -> None:
        # One timer per idle period, not per request: it re-arms itself if the connection was busy.
        self.idle_since = self.loop.time()
        if self.keepalive_handle is None:
            self.keepalive_handle = self.loop.call_later(self.shared.keepalive_timeout, self._keepalive_check)

    def _keepalive_check(self) -> None:
        self.keepalive_handle = None
        if self.closing or self.active is not None or self.pipeline:
            return  # busy: re-armed when it next goes idle
        remaining = self.idle_since + self.shared.keepalive_timeout - self.loop.time()
        if remaining <= 0:
            self.close()
        else:
            self.keepalive_handle = self.loop.call_later(remaining, self._keepalive_check)


class Listener:
    """One listening socket (the outbound proxy port or the inbound port) with start/stop."""

    def __init__(self, host: str, port: int, router: Router, pool: ConnectionPool, mode: Mode | str, *,
                 on_complete: OnComplete | None = None, response_timeout: float | None = None,
                 keepalive_timeout: float = 60.0, backlog: int = 1024) -> None:
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.backlog = backlog
        self.state = ServerState(router, pool, Mode(mode), on_complete, response_timeout, keepalive_timeout)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.state
        self._server = await loop.create_server(
            lambda: HttpProxyProtocol(state), self.host, self.port, reuse_address=True, backlog=self.backlog
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish for up to `grace` seconds, then cut the rest."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
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
        await server.wait_closed()


async def serve(host: str, port: int, router: Router, pool: ConnectionPool, mode: Mode | str,
                on_complete: OnComplete | None = None, **options: float | None) -> Listener:
    """Start a listener; `options` are Listener's keywords (response_timeout, keepalive_timeout...)."""
    listener = Listener(host, port, router, pool, mode, on_complete=on_complete, **options)  # type: ignore[arg-type]
    await listener.start()
    return listener

"""The upstream side: one asyncio.Protocol per connection to an endpoint, and the keep-alive pool.

A connection serves one exchange at a time (no upstream pipelining). It parses the response with
httptools and hands events to the exchange (proxy/http/exchange.py), which writes them to the client.
The pool keeps idle connections per (address, port), newest first out, and closes those idle longer
than their idle timeout from a single timer per pool rather than one per connection. A cluster with
connection settings in its DestinationRule (ConnPolicy: maxRequestsPerConnection, http.idleTimeout,
tcp.maxConnectionDuration, tcp.tcpKeepalive) gets connections of its own, keyed (address, port, cluster),
so its rules hold whatever other clusters reach the same endpoint (Envoy's pools are per cluster too).

A response head is bounded like a request head (proxy/http/limits.py): its bytes are counted as they
arrive and its headers as they are parsed; past either limit the upstream connection is closed and the
client gets 502 with Envoy's flag UPE.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import TYPE_CHECKING

import httptools

from proxy.errors import UpstreamConnectError, UpstreamProtocolError, UpstreamReset
from proxy.http.flow import PEER_FULL, ReadGate
from proxy.http.head import connection_tokens

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.http.server import HttpProxyProtocol
    from proxy.outbound.dns_cache import DnsCache

Key = tuple[str, int] | tuple[str, int, str]


class ConnPolicy:
    """A cluster's settings for its upstream connections (DestinationRule connectionPool)."""

    __slots__ = ("cluster", "max_requests", "idle_timeout", "max_duration", "keepalive")

    def __init__(self, cluster: str, max_requests: int = 0, idle_timeout: float = 0.0, max_duration: float = 0.0,
                 keepalive: tuple[int, int, int] | None = None) -> None:
        self.cluster = cluster
        self.max_requests = max_requests  # maxRequestsPerConnection; 0: unlimited, 1: no keep-alive
        self.idle_timeout = idle_timeout  # seconds; 0: the pool's
        self.max_duration = max_duration  # seconds since connect; 0: none
        self.keepalive = keepalive  # (idle seconds, interval seconds, probes), 0: the OS's; None: no SO_KEEPALIVE

    def key(self, address: str, port: int) -> Key:
        return (address, port, self.cluster)


def set_keepalive(sock: socket.socket | object, idle: int, interval: int, probes: int) -> None:
    """SO_KEEPALIVE, and the times and count that are set (0 leaves the OS's value)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # type: ignore[union-attr]
    for option, value in ((getattr(socket, "TCP_KEEPIDLE", None), idle),
                          (getattr(socket, "TCP_KEEPINTVL", None), interval),
                          (getattr(socket, "TCP_KEEPCNT", None), probes)):
        if option is not None and value:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)  # type: ignore[union-attr]

# Response framing as the exchange needs to know it.
NO_BODY = 0  # HEAD, 204, 304
LENGTH = 1  # content-length: pass through as is
STREAM = 2  # chunked, or read until the upstream closes: the exchange chooses how to frame it


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        # per-connection
        "pool", "key", "transport", "parser", "gate", "write_paused", "reused", "closed", "in_pool",
        "idle_since", "idle_timeout", "limited", "requests_left", "expires",
        # per-exchange
        "exchange", "got_bytes", "status", "reason", "headers", "until_close", "head_done", "head_left", "in_head",
        # websocket: the client connection raw bytes are relayed to after a 101 (never pooled again)
        "tunnel",
    )

    def __init__(self, pool: ConnectionPool, key: Key) -> None:
        # per-connection
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpResponseParser(self)
        self.gate: ReadGate = None  # type: ignore[assignment]
        self.write_paused = False
        self.reused = False
        self.closed = False
        self.in_pool = False
        self.idle_since = 0.0
        self.idle_timeout = pool.idle_timeout
        self.limited = False  # a ConnPolicy caps its requests or its age
        self.requests_left = 0  # with maxRequestsPerConnection: requests it may still carry
        self.expires = 0.0  # with maxConnectionDuration: loop time it must close by
        # per-exchange
        self.exchange: Exchange | None = None
        self.got_bytes = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.until_close = False
        self.head_done = False  # a HEAD response's headers are all it has
        self.head_left = 0  # bytes the response head may still take
        self.in_head = False
        self.tunnel: HttpProxyProtocol | None = None

    # --- driven by the exchange -------------------------------------------------------------------

    def attach(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.got_bytes = False
        self.until_close = False
        self.status = 0
        self.head_left = self.pool.max_head_bytes
        self.in_head = True

    def abort(self) -> None:
        """Give up mid-exchange: the connection's state is unknown, so it is never reused."""
        self.exchange = None
        self.closed = True
        self.transport.abort()

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gate = ReadGate(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        exchange = self.exchange
        if exchange is None:  # nothing asked: a broken or hostile upstream; do not reuse it
            self.closed = True
            self.transport.close()
            return
        self.got_bytes = True
        if self.in_head:  # count the head's bytes before the parser buffers them
            left = self.head_left - len(data)
            if left < 0:
                self._head_overflow(data)
                return
            self.head_left = left
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # our own code raised inside a callback
            self._fail(exc.__context__ or exc)
            return
        except httptools.HttpParserUpgrade as exc:
            if self.tunnel is not None:  # the 101 was forwarded: what followed it is tunnel data
                rest = data[exc.args[0]:] if exc.args else b""
                if rest:
                    self.tunnel.write(rest)
                return
            self._fail(UpstreamProtocolError("upstream sent a malformed response"))
            return
        except httptools.HttpParserError:
            self._fail(UpstreamProtocolError("upstream sent a malformed response"))
            return
        if self.head_done:
            # llhttp cannot know the request was HEAD and would wait for a body: start a fresh parser.
            self.head_done = False
            keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
            self._complete(keep_alive)
        else:
            exchange.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.exchange = None
            self.tunnel.close()
            return
        if self.in_pool:
            self.pool.discard(self)
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if self.until_close:  # an HTTP/1.0-style response ends when the upstream closes
            exchange.on_response_end()
        else:
            exchange.upstream_lost(
                UpstreamReset("upstream closed the connection before a complete response"),
                retryable=self.reused and not self.got_bytes,
            )

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.proto.gate.pause(PEER_FULL)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.proto.gate.resume(PEER_FULL)

    # --- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.reason = b""
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= self.pool.max_headers:
            raise UpstreamProtocolError(f"upstream response has more than {self.pool.max_headers} headers")
        headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        self.in_head = status < 200 and status != 101  # an interim response: the real head follows
        if status == 101 and self.exchange is not None and self.exchange.upgrade is not None:
            self.exchange.on_upgrade(self.reason, self.headers)
            return
        if status < 200:  # interim (100 Continue...): we answered the client's Expect ourselves
            return
        exchange = self.exchange
        assert exchange is not None
        has_length = chunked = False
        drop = None
        for name, value in self.headers:
            if name == b"content-length":
                has_length = True
            elif name == b"transfer-encoding":  # `gzip` alone would mean read-until-close
                chunked = value.rstrip().lower().endswith(b"chunked")
            elif name == b"connection":
                drop = connection_tokens(value)
        if exchange.is_head or status == 204 or status == 304:
            framing = NO_BODY
            self.head_done = exchange.is_head
        elif has_length and not chunked:
            framing = LENGTH
        else:
            framing = STREAM
            self.until_close = not chunked
        exchange.on_response_head(status, self.reason, self.headers, drop, framing)

    def on_body(self, body: bytes) -> None:
        if not self.head_done and self.exchange is not None:
            self.exchange.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.status >= 200 and not self.head_done:
            self._complete(self.parser.should_keep_alive())

    # --- internals --------------------------------------------------------------------------------

    def _complete(self, keep_alive: bool) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        self.until_close = False
        # Reusable only if the whole request went out too (an early answer leaves it half-sent).
        if keep_alive and exchange.req_done and (not self.limited or self._may_continue()):
            self.pool.release(self)
        else:
            self.closed = True
            self.transport.close()
        exchange.on_response_end()

    def _may_continue(self) -> bool:
        """After a response: whether maxRequestsPerConnection and maxConnectionDuration allow another."""
        if self.requests_left:
            self.requests_left -= 1
            if not self.requests_left:
                return False
        return not self.expires or self.pool.now() < self.expires

    def _head_overflow(self, data: bytes) -> None:
        """`data` takes the response head past its limit: parse what fits; fail if the head is not over."""
        room = self.head_left
        self.data_received(data[:room])
        if self.closed:
            return
        if self.exchange is not None and self.in_head and self.head_left == 0:
            self._fail(UpstreamProtocolError(
                f"upstream response head larger than {self.pool.max_head_bytes} bytes"))
            return
        self.data_received(data[room:])  # the head ended: body, or (nothing asked) a reason to close

    def _fail(self, exc: BaseException) -> None:
        exchange = self.exchange
        self.abort()
        if exchange is not None:
            exchange.upstream_lost(exc, retryable=False)


class ConnectionPool:
    """Idle keep-alive upstream connections per (address, port); opens new ones on demand."""

    def __init__(self, *, max_idle_per_key: int = 64, idle_timeout: float = 60.0,
                 connect_timeout: float = 5.0, max_head_bytes: int = 60 * 1024, max_headers: int = 100) -> None:
        self.max_idle_per_key = max_idle_per_key
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_head_bytes = max_head_bytes  # an upstream's response line + headers (Envoy: 60 KiB)
        self.max_headers = max_headers  # headers per response (Envoy's max_headers_count: 100)
        self.opened = 0  # connections ever opened: a cheap stat, and what tests count
        # Resolves host names of passthrough targets off the loop, cached (proxy/outbound/dns_cache.py);
        # None: the loop's create_connection resolves them itself.
        self.resolver: DnsCache | None = None
        self._idle: dict[Key, deque[UpstreamConnection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = float("inf")  # loop time the sweeper fires at (inf: none scheduled)
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self, key: Key) -> UpstreamConnection | None:
        """The most recently used idle connection to `key`, or None."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            if not conn.closed and not conn.transport.is_closing():
                if conn.expires and self.now() >= conn.expires:  # maxConnectionDuration reached while idle
                    conn.closed = True
                    conn.transport.close()
                    continue
                conn.reused = True
                return conn
        return None

    def now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    async def connect(self, address: str, port: int, timeout: float | None = None,
                      policy: ConnPolicy | None = None) -> UpstreamConnection:
        """`timeout`: the cluster's connectTimeout, else the pool's; `policy`: the cluster's connection settings."""
        loop = self._loop = asyncio.get_running_loop()
        key = (address, port) if policy is None else policy.key(address, port)
        timeout = timeout or self.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                if self.resolver is not None:
                    _, conn = await self.resolver.connect(loop, lambda: UpstreamConnection(self, key), address, port)
                else:
                    _, conn = await loop.create_connection(lambda: UpstreamConnection(self, key), address, port)
        except TimeoutError:
            raise UpstreamConnectError(
                f"upstream connect error: {address}:{port}: timed out after {timeout:g}s"
            ) from None
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise UpstreamConnectError(f"upstream connect error: {address}:{port}: {reason}") from exc
        self.opened += 1
        if policy is not None:
            self._apply(conn, policy, loop.time())
        return conn

    @staticmethod
    def _apply(conn: UpstreamConnection, policy: ConnPolicy, now: float) -> None:
        if policy.idle_timeout:
            conn.idle_timeout = policy.idle_timeout
        if policy.max_requests or policy.max_duration:
            conn.limited = True
            conn.requests_left = policy.max_requests
            conn.expires = now + policy.max_duration if policy.max_duration else 0.0
        if policy.keepalive is not None:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                set_keepalive(sock, *policy.keepalive)

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed or conn.in_pool:
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= self.max_idle_per_key:
            conn.closed = True
            conn.transport.close()
            return
        conn.gate.clear()  # read while idle, so a close by the peer is noticed and the conn dropped
        conn.in_pool = True
        assert self._loop is not None
        conn.idle_since = now = self._loop.time()
        idle.append(conn)
        due = now + conn.idle_timeout
        if due < self._sweep_at:  # only a shorter idle timeout than any pooled so far moves the sweep
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._sweep_at = due
            self._sweeper = self._loop.call_at(due, self._sweep)

    def discard(self, conn: UpstreamConnection) -> None:
        conn.in_pool = False
        idle = self._idle.get(conn.key)
        if idle is not None:
            try:
                idle.remove(conn)
            except ValueError:
                pass

    def idle_count(self, key: Key | None = None) -> int:
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(q) for q in self._idle.values())

    def close(self) -> None:
        """Close every idle connection (at shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper, self._sweep_at = None, float("inf")
        for idle in self._idle.values():
            while idle:
                conn = idle.pop()
                conn.in_pool = False
                conn.closed = True
                conn.transport.close()
        self._idle.clear()

    def _sweep(self) -> None:
        self._sweeper, self._sweep_at = None, float("inf")
        assert self._loop is not None
        now = self._loop.time()
        next_due = None
        for key in list(self._idle):
            idle = self._idle[key]  # one key's connections share an idle timeout: the oldest is at the left
            while idle and (idle[0].idle_since + idle[0].idle_timeout <= now
                            or (idle[0].expires and idle[0].expires <= now)):
                conn = idle.popleft()
                conn.in_pool = False
                conn.closed = True
                conn.transport.close()
            if not idle:
                del self._idle[key]
            else:
                due = idle[0].idle_since + idle[0].idle_timeout
                if next_due is None or due < next_due:
                    next_due = due
        if next_due is not None:
            self._sweep_at = max(next_due, now + 0.01)
            self._sweeper = self._loop.call_at(self._sweep_at, self._sweep)

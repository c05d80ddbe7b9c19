"""The upstream side of an exchange: one asyncio.Protocol per connection to an endpoint.

A connection serves one exchange at a time (no upstream pipelining). It parses the response with
httptools and hands events to the exchange (proxy/http/exchange.py) through the `ResponseSink`
protocol below, which writes them to the client. The keep-alive pool is proxy/http/upstream_pool.py.

llhttp gets no per-header callbacks: the reads a response head arrives in are kept, and once it is parsed
the head goes to the client as received, hop-by-hop lines cut, or else is parsed again into headers for
the exchange to rebuild (proxy/http/response_head.py says when and why each is safe).

A response head is bounded like a request head (proxy/http/limits.py): its bytes are counted as they
arrive and its headers when it is complete; past either limit the upstream connection is closed and the
client gets 502 with Envoy's flag UPE.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httptools

from proxy.core.conn_policy import Key
from proxy.core.errors import UpstreamProtocolError, UpstreamReset
from proxy.core.sink import Client, ResponseSink
from proxy.http.flow import PEER_FULL, ReadGate
from proxy.http.head import more_tokens
from proxy.http.response_head import LAST_NONE, is_chunked, last_answer, parse, scan


# TRANSFER_CODING: a response in any transfer coding but chunked (gzip, `gzip, chunked`...) is refused with 502
# (UPE), as Envoy refuses it and as the listener answers such a request 501: we decode only chunked, and
# forwarding the bytes with the coding's name dropped would hand the client a body it cannot read.


class _AfterHead(Exception):
    """llhttp, which cannot know a response answers HEAD, parsed another head after it in the same read."""


class Pool(Protocol):
    """The pool a connection goes back to (proxy/http/upstream_pool.ConnectionPool)."""

    idle_timeout: float
    max_head_bytes: int
    max_headers: int

    def now(self) -> float: ...
    def release(self, conn: UpstreamConnection, now: float = 0.0) -> None: ...
    def discard(self, conn: UpstreamConnection) -> None: ...


# Response framing as the exchange needs to know it.
NO_BODY = 0  # HEAD, 204, 304
LENGTH = 1  # content-length: pass through as is
STREAM = 2  # chunked, or read until the upstream closes: the exchange chooses how to frame it


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        # per-connection
        "pool", "key", "transport", "parser", "gate", "write_paused", "reused", "closed", "in_pool", "peer_told",
        "idle_since", "idle_timeout", "limited", "requests_left", "expires",
        # per-exchange
        "exchange", "got_bytes", "status", "until_close", "head_done", "head_left", "in_head",
        "reads",  # the reads the response head has arrived in so far
        # the head this upstream sent last and scan's answer for it (response_head._last's shape): its next head,
        # the same bytes as a rule, is answered without calling scan (and whatever other upstreams send meanwhile)
        "last_head",
        # websocket: the client connection raw bytes are relayed to after a 101 (never pooled again)
        "tunnel",
    )

    def __init__(self, pool: Pool, key: Key) -> None:
        # per-connection
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = httptools.HttpResponseParser(self)
        self.gate: ReadGate = None  # type: ignore[assignment]
        self.write_paused = False
        self.reused = False
        self.closed = False
        # the peer metadata exchange was settled on this connection: the called sidecar was told who calls, or
        # the endpoint has no sidecar to tell (proxy/http/exchange.py _send, proxy/telemetry/peer_metadata.py)
        self.peer_told = False
        self.in_pool = False
        self.idle_since = 0.0
        self.idle_timeout = pool.idle_timeout
        self.limited = False  # a ConnPolicy caps its requests or its age
        self.requests_left = 0  # with maxRequestsPerConnection: requests it may still carry
        self.expires = 0.0  # with maxConnectionDuration: loop time it must close by
        # per-exchange
        self.exchange: ResponseSink | None = None
        self.got_bytes = False
        self.status = 0  # of the last head parsed (an interim 1xx before the final one)
        self.reads: list[bytes] = []
        self.until_close = False
        self.head_done = False  # a HEAD response's headers are all it has
        self.head_left = 0  # bytes the response head may still take
        self.in_head = False
        self.tunnel: Client | None = None
        self.last_head = LAST_NONE

    # --- driven by the exchange -------------------------------------------------------------------

    def attach(self, exchange: ResponseSink) -> None:
        """Ready for `exchange`'s response (Exchange._send has this inline: change both together)."""
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
            self.reads.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # our own code raised inside a callback
            if isinstance(exc.__context__, _AfterHead):  # the HEAD response went out whole: end it as usual,
                self.head_done = False  # but never reuse the connection, whose state is unknown
                self.parser = httptools.HttpResponseParser(self)
                self.on_message_complete(False)
                return
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
            self.on_message_complete(keep_alive)
        elif self.exchange is not None:  # ended in this read (complete or failed): its end flushed it
            exchange.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser = None  # type: ignore[assignment]  # break the parser's cycle: see server_lifecycle.py
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

    def on_headers_complete(self) -> None:
        if self.head_done:  # a head after a HEAD response's, in the same read: nothing asked for it, and
            raise _AfterHead  # it must not reach the client as a response to its next request
        status = self.parser.get_status_code()
        interim_before = self.status  # set: a 1xx head came first, so this one does not start its read
        self.status = status
        if status < 200 and status != 101:  # interim (100 Continue...): we answered the client's Expect
            return  # ourselves; the real head follows (still counted against the head limit)
        self.in_head = False
        reads = self.reads
        data = reads[0] if len(reads) == 1 else b"".join(reads)
        reads.clear()
        exchange = self.exchange
        if status == 101:
            if exchange is not None and exchange.upgrade is not None:
                _, reason, headers = parse(data, self.pool.max_headers)
                exchange.on_upgrade(reason, headers)
            return
        if exchange is None:  # a second response in the read that ended the first: nothing asked for it
            raise UpstreamProtocolError("upstream sent a response nothing asked for")  # _fail aborts
        found = None
        if not interim_before:
            keep_alive = self.parser.should_keep_alive()
            last = self.last_head  # as scan's own memo matches it; max_headers is the pool's, the same for every head
            if data[:last[0]] == last[1] and status == last[2] and keep_alive == last[3]:
                found = last[5]
            else:
                found = scan(data, status, self.pool.max_headers, keep_alive)
                if found is not None:
                    last = last_answer()
                    if last[5] is found:  # scan remembered this head: so does the connection
                        self.last_head = last
        if found is not None:  # the head as received (the usual case): no header list is built
            parts, has_length, chunked = found
            if has_length and not chunked and not exchange.is_head and status != 204 and status != 304:
                framing = LENGTH  # _framing's answer for the usual head, without the call
            else:
                framing = self._framing(exchange, status, has_length, chunked)
            if exchange.on_raw_response_head(status, parts, framing):
                return
        # Rebuilt from the parsed headers: a head after a 1xx, an HTTP/1.0 one, one past max_headers (parse
        # raises), or an exchange that edits response headers.
        _, reason, headers = parse(data, self.pool.max_headers)
        has_length = chunked = False
        drop = None
        for name, value in headers:
            if name == b"content-length":
                has_length = True
            elif name == b"transfer-encoding":
                if not is_chunked(value):  # TRANSFER_CODING
                    raise UpstreamProtocolError(f"upstream sent transfer coding {value.decode('latin-1')!r}: "
                                                "only chunked is implemented")
                chunked = True
            elif name == b"connection":
                drop = more_tokens(drop, value)
        exchange.on_response_head(status, reason, headers, drop, self._framing(exchange, status, has_length, chunked))

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and not self.head_done:
            exchange.on_response_body(body)

    def on_message_complete(self, keep_alive: bool | None = None) -> None:
        """The response ended: the connection back to the pool (or closed), then the exchange told.
        `keep_alive`: given when a HEAD response ends in data_received, whose parser is replaced; else llhttp's."""
        exchange = self.exchange
        if exchange is None or self.status < 200 or self.head_done:
            return
        self.exchange = None  # connection_lost reads until_close only with an exchange: attach resets it
        if keep_alive is None:
            keep_alive = self.parser.should_keep_alive()
        # The moment the response ended, read once: the pool's idle clock, the exchange's duration and the client
        # connection's idle clock all start from it (each loop.time() call is ~300 instructions, callgrind).
        now = exchange.proto.loop.time()
        # Reusable only if the whole request went out too (an early answer leaves it half-sent).
        if keep_alive and exchange.req_done and (not self.limited or self._may_continue()):
            self.pool.release(self, now)
        else:
            self.closed = True
            self.transport.close()
        exchange.on_response_end(now)

    # --- internals --------------------------------------------------------------------------------

    def _framing(self, exchange: ResponseSink, status: int, has_length: bool, chunked: bool) -> int:
        if exchange.is_head or status == 204 or status == 304:
            self.head_done = exchange.is_head
            return NO_BODY
        if has_length and not chunked:
            return LENGTH
        self.until_close = not chunked
        return STREAM

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

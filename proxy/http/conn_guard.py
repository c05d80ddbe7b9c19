"""What one client connection may make a listener hold, and for how long: the guards of HttpProxyProtocol.

A mixin of proxy/http/server.HttpProxyProtocol (no state of its own: `__slots__ = ()`), kept apart so the
server module reads as the request flow and this one as its bounds (proxy/http/limits.py, Envoy's):
    head        bytes counted as they arrive (431 / 414), a pipelined head checked by its parsed size,
                HTTP/0.9 refused instead of waited for, a bug in a parser callback told from bad input
    connections the listener's cap: more are closed at once, one log line per REFUSED_LOG_EVERY
    timeouts    one timer per connection (keepalive_handle) for keep-alive, request-headers, request and
                stream-idle timeouts, against t_begin and an activity count (`reads + ticks`), so that
                no request arms a timer of its own
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httptools

from proxy.core.errors import (
    BadRequest, HeadersTooLarge, ProxyError, RequestTimeout, StreamIdleTimeout, UriTooLong,
)
from proxy.core.errors import Overloaded
from proxy.http.rescue import log_bug
from runtime.log import get_logger

if TYPE_CHECKING:
    import asyncio

    from proxy.http.listener_state import Downstream

    class _Base(Downstream, asyncio.Protocol):  # what HttpProxyProtocol, the class this guards, offers
        ...
else:
    _Base = object

REFUSED_LOG_EVERY = 10.0  # seconds between log lines about connections refused over the limit

log = get_logger("proxy.http")


class ConnectionGuard(_Base):
    __slots__ = ()

    # --- the request head -------------------------------------------------------------------------

    def _callback_failed(self, exc: httptools.HttpParserCallbackError) -> None:
        cause = exc.__context__ or exc
        if not isinstance(cause, ProxyError):  # our own bug: 500 (rescue logs it), and close
            self.stopping = True
            if self.broken:
                log_bug(cause)  # nothing left to answer it on
                return
        self._reject(cause)

    def _head_overflow(self, data: bytes) -> None:
        """`data` takes the head past max_head: parse what fits; refuse if the head is still not over."""
        room = self.head_left
        self.data_received(data[:room])  # leaves head_left at 0 unless the head ended in there
        if self.broken:
            ex = self.active or (self.pipeline[-1] if self.pipeline else None)
            if ex is not None and ex.upgrade is not None and not ex.resp_done and not self.closing:
                self.early += data[room:]  # a websocket head ended in there: the rest waits for the 101 too
            return
        if self.in_head and self.head_left == 0:
            # Still reading the request line (no header, the URL is nearly all of it) means 414.
            if not self.headers and len(self.url) + 32 >= self.max_head:
                self._reject(UriTooLong(f"request line longer than {self.max_head} bytes"))
            else:
                self._reject(HeadersTooLarge(f"request head larger than {self.max_head} bytes"))
            return
        self.data_received(data[room:])  # the head ended: the rest is body or the next request

    def _check_head_size(self, method: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """For a head that began in the read that ended the previous request: its size as parsed (a lower
        bound of its bytes on the wire, short by at most the optional space after each colon)."""
        size = len(method) + len(self.url) + 14 + 3 * len(headers)  # "M U HTTP/1.1\r\n", "N:V\r\n", "\r\n"
        for name, value in headers:
            size += len(name) + len(value)
        if size > self.max_head:
            raise HeadersTooLarge(f"request head larger than {self.max_head} bytes")

    def _check_partial_head(self, data: bytes) -> None:
        """A head is still arriving. An HTTP/0.9 request line (`GET /\r\n`, no version) would leave
        llhttp waiting for headers that never come: refuse it now rather than keep a silent connection."""
        version = self.parser.get_http_version()
        if version == "0.9" or (version == "0.0" and data.rfind(b"\n") > data.rfind(b" ")):
            self._reject(BadRequest("HTTP/0.9 is not supported"))
        elif not self.shared.head_budget.charge(self, self.max_head - self.head_left):
            self._reject(Overloaded("too many incomplete request heads held by this listener"))

    def _count_trailers(self, data: bytes) -> None:
        """A read wholly after a chunk-size line (no chunk data in it): the rest of that line or the last chunk's
        trailers. httptools joins a trailer line's pieces until the line ends, so these bytes count against
        max_head as a head's do; else a trailer that never ends was held without a bound."""
        left = self.head_left - len(data)
        self.head_left = left
        if left < 0:
            self._reject(HeadersTooLarge(f"request trailers larger than {self.max_head} bytes"))

    # --- connections and timeouts -----------------------------------------------------------------

    def _refuse_connection(self, cap: int) -> None:
        shared = self.shared
        self.closing = True
        self.transport.close()
        shared.refused += 1
        now = self.loop.time()
        if now - shared.refused_logged >= REFUSED_LOG_EVERY:  # one line per interval, not per connection
            shared.refused_logged = now
            log.warning("connection limit reached: new connections closed", listener=shared.mode.value,
                        max_connections=cap, refused_total=shared.refused)

    def _arm_keepalive(self) -> None:
        # One timer per connection, not per request: it re-arms itself while the connection lives.
        self.idle_since = self.loop.time()
        if self.keepalive_handle is None:
            self.keepalive_handle = self.loop.call_later(self._idle_wait(), self._keepalive_check)

    def watch(self, deadline: float) -> None:
        """The active exchange's response deadline (loop time): make the connection's timer wake by then.
        Only a deadline earlier than the timer's next wake-up re-arms it, so back-to-back requests with a
        route timeout longer than that wake-up cost a comparison, not a timer handle each."""
        handle = self.keepalive_handle
        if handle is None:  # called from within the timer's own check: wake for the other timeouts too
            self.keepalive_handle = self.loop.call_at(min(deadline, self.loop.time() + self._idle_wait()),
                                                      self._keepalive_check)
        elif handle.when() > deadline:
            handle.cancel()
            self.keepalive_handle = self.loop.call_at(deadline, self._keepalive_check)

    def _idle_wait(self) -> float:
        """How long an idle connection's timer may sleep: its keep-alive, or less, so that a request that
        starts meanwhile is under its own timeouts soon enough (one wake-up per interval, not per request)."""
        shared = self.shared
        wait = shared.keepalive_timeout
        limits = shared.limits
        for timeout in (limits.request_headers_timeout, limits.request_timeout, limits.stream_idle_timeout / 4):
            if timeout and timeout < wait:
                wait = timeout
        return wait

    def _keepalive_check(self) -> None:
        """The connection's one timer: keep-alive when idle; while a request is open, the request-headers,
        request and stream-idle timeouts (Envoy's), measured from t_begin and from the last change of
        `reads + ticks` that a check saw (so the stream-idle timeout fires between 1 and 1.5 times its value)."""
        self.keepalive_handle = None
        if self.closing:
            return
        now = self.loop.time()
        ticks = self.reads + self.ticks
        if ticks != self.seen_ticks:
            self.seen_ticks = ticks
            self.quiet_since = now
        if self.active is None and not self.pipeline and not self.t_begin and self.tunnel is None:
            remaining = self.idle_since + self.shared.keepalive_timeout - now
            if remaining <= 0:
                self.close()
            else:
                self.keepalive_handle = self.loop.call_later(min(remaining, self._idle_wait()),
                                                             self._keepalive_check)
            return
        limits = self.shared.limits
        # Wake again within the shortest timeout even if none is due: the request may end and another
        # start meanwhile, and that one's deadlines must be seen in time.
        wait = self._idle_wait()
        error: ProxyError | None = None
        t_begin = self.t_begin
        if t_begin and not self.broken:  # a request is arriving
            timeout = limits.request_headers_timeout
            if timeout and self.in_head:
                remaining = t_begin + timeout - now
                if remaining <= 0:
                    error = RequestTimeout(f"request headers not received within {timeout:g}s")
                wait = min(wait, remaining)
            timeout = limits.request_timeout
            if timeout and error is None:
                remaining = t_begin + timeout - now
                if remaining <= 0:
                    error = RequestTimeout(f"request not received within {timeout:g}s")
                wait = min(wait, remaining)
        active = self.active
        if active is not None and active.deadline and error is None:  # the response timeout (Exchange._go)
            remaining = active.deadline - now
            if remaining <= 0:
                active.on_deadline()
                if self.closing or self.keepalive_handle is not None:
                    return  # closed, or re-armed meanwhile (the connection went idle, the next request began)
            else:
                wait = min(wait, remaining)
        idle = limits.stream_idle_timeout
        if idle:
            if error is None and now - self.quiet_since >= idle:
                error = StreamIdleTimeout(f"stream idle for {idle:g}s")
        if error is not None:
            self._timed_out(error)
            if self.closing:
                return
            wait = max(wait, 0.05)  # check again what is left
        handle = self.keepalive_handle
        if handle is not None:  # re-armed meanwhile (a request began while this ran): keep the earlier wake-up
            if handle.when() <= now + wait:
                return
            handle.cancel()
        self.keepalive_handle = self.loop.call_later(max(wait, 0.0), self._keepalive_check)

    def _timed_out(self, error: ProxyError) -> None:
        """408 for the request still arriving (in its turn), else for the active one if its response has
        not started (a response under way is cut). The connection closes afterwards; if a timeout fires
        again before it has (the 408 is queued behind a stalled request), it closes outright."""
        self.stopping = True
        active = self.active
        if self.tunnel is not None or self.timed_out:
            self.close()
            return
        self.timed_out = True
        if self.t_begin and not self.broken:
            self._reject(error)
            if active is not None and active.resp_done and not self.closing:
                self.close()  # it was answered early and its body is what is late
        elif active is not None and not active.resp_done:
            active.fail(error)
        else:
            self.close()

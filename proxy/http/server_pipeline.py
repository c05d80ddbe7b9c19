"""A client connection's pipeline: requests answered in order, the first the active Exchange, later ones
waiting with reading paused; a request refused in its turn; reading stopped. A plain base class of
proxy/http/server.HttpProxyProtocol (no state of its own: `__slots__ = ()`).
"""

from __future__ import annotations

import httptools

from proxy.core.errors import BadRequest
from proxy.http.exchange import Exchange
from proxy.http.flow import PIPELINE


class RequestPipeline:
    __slots__ = ()

    def exchange_done(self, ex: Exchange, now: float = 0.0) -> None:
        """`ex` is over; `now`: the loop time it ended, if the caller read it (the idle clock starts there)."""
        if ex is self.active:
            self.active = None
            if not (ex.close_after or self.advancing or self.pipeline or self.closing or self.stopping
                    or self.broken):
                # The common end (keep-alive, nothing queued): _advance's tail without its loop, and
                # _arm_keepalive inline.
                if self.gate.reasons & PIPELINE:
                    self.gate.resume(PIPELINE)
                self.idle_since = now or self.loop.time()
                if self.keepalive_handle is None:
                    self.keepalive_handle = self.loop.call_later(self._idle_wait(), self._keepalive_check)
                return
        if ex.close_after:
            self.close()
        elif not self.advancing:
            self._advance()

    # --- internals --------------------------------------------------------------------------------

    def _advance(self) -> None:
        # A loop, not recursion: a pipeline of requests answered synchronously (404s) must not nest.
        self.advancing = True
        try:
            while self.active is None and self.pipeline and not self.closing:
                ex = self.active = self.pipeline.popleft()
                self._start(ex)
        finally:
            self.advancing = False
        if self.active is None and not self.closing:
            self.gate.resume(PIPELINE)
            if self.stopping or self.broken:  # nothing more will be read
                self.close()
            else:
                self._arm_keepalive()

    def _start(self, ex: Exchange) -> None:
        try:
            ex.start()
        except Exception as exc:  # a bug of ours while routing or sending: 500, logged, closed
            self.stopping = True
            ex.fail(exc)

    def _malformed(self, exc: httptools.HttpParserError) -> None:
        self._reject(BadRequest("malformed request: %s" % (exc.args[0] if exc.args else "parse error")))

    def _reject(self, error: BaseException) -> None:
        """Answer `error` for the request being read (in its turn) and read nothing more."""
        if self.broken:
            return
        ex = self.current
        self._stop_reading()
        if ex is not None and not ex.req_done:  # the body of a request in progress is bad
            self.current = None
            ex.error = error
            ex.close_after = True
            if ex.started:
                ex.fail(error)
            if ex.resp_done:  # answered early (before its body ended): nothing to say, so do not wait
                self.close()
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

"""How an exchange ends: a failed upstream, an error answered (or the client cut), a response the sidecar
made itself, and the bookkeeping every end runs once (timers, slots, release, telemetry). A plain base
class of proxy/http/exchange.Exchange (no state of its own: `__slots__ = ()`).
"""

from __future__ import annotations

from proxy.core.errors import BadRequest, ProxyError, UpstreamTimeout
from proxy.http import telemetry
from proxy.http.flow import BUFFERING, PEER_FULL
from proxy.http.rescue import rescue
from proxy.http.resilience import Resilience
from proxy.outbound import retry


class ExchangeEnd:
    __slots__ = ()

    def upstream_lost(self, exc: BaseException, retryable: bool) -> None:
        """The upstream connection failed. A reused idle connection the server closed as we sent is
        retried once on a fresh one, but only if the whole request is still in hand to resend."""
        self.conn = None
        if self.resp_done:
            return
        if not isinstance(exc, ProxyError):  # our bug in a response callback: 500, not retried, not the upstream's
            self.fail(exc)
            return
        if retryable and self.replay is not None and not self.retried:
            self.retried = True
            self._connect()
            return
        self._report_failure()
        if self.policy is not None and self._control().on_failure(retry.RESET):
            return
        self.fail(exc)

    # --- failure ----------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Answer via rescue if nothing was sent yet, else cut the client connection."""
        if self.resp_done:
            return
        self._finish()
        self._drop_upstream()
        proto = self.proto
        proto.gate.resume(BUFFERING | PEER_FULL)
        if self.head_sent:
            self.flag = getattr(exc, "flag", "-")
            self.close_after = True
            proto.close()
        else:
            self.out.clear()
            close = (not self.req_done or not self.keep_alive or proto.stopping
                     or isinstance(exc, BadRequest) or not isinstance(exc, ProxyError))  # ours: 500 + close
            self.close_after = close
            self.status, self.flag, payload = rescue(exc, close)
            if isinstance(exc, ProxyError) and exc.details:
                self.details = exc.details  # Envoy's response code details, for the access log
            proto.write(payload)
        self._log()
        self._release()

    def on_deadline(self) -> None:
        """The response timeout passed (called by the connection's timer)."""
        self.deadline = 0.0
        self.fail(UpstreamTimeout(f"upstream request timeout after {self.timeout:g}s"))

    def _answer(self, status: int, data: bytes, close: bool) -> None:
        """Write a response the sidecar made itself; nothing goes upstream."""
        self.resp_done = True
        self.close_after = close
        self.status = status
        self.proto.write(data)
        self._log()
        self._release()

    def _finish(self) -> None:
        """The response is settled (complete, failed, or the client left): stop the timers and give
        the endpoint's in-flight slot back. Runs once; every path that ends an exchange calls it (a complete
        response, ExchangeResponse.on_response_end, has it inline: change both together)."""
        self.resp_done = True
        target = self.upstream
        if target is not None and (target.held or target.slot):  # Target.release, called only when it has work
            target.release()
        if self.ctl is not None:
            self.ctl.finish()
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _control(self) -> Resilience:
        ctl = self.ctl
        if ctl is None:
            ctl = self.ctl = Resilience(self)
        return ctl

    def _report_failure(self) -> None:
        """A try ended without a response (connect failure, reset, per-try timeout): outlierDetection counts it."""
        target = self.upstream
        if target is not None and target.outlier is not None:
            target.outlier.report(target.endpoint, 0)

    def _release(self) -> None:
        if not self.released:
            self.released = True
            self.proto.exchange_done(self)

    # Telemetry (proxy/http/telemetry.py) reads what it reports of the exchange itself: `self._log(now)` is
    # `report(self, now)`, with no call layer of ours in between. `now`: the loop time the exchange ended, if
    # the caller read it already.
    _log = telemetry.report

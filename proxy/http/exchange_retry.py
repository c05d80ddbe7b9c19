"""The route-policy steps of an exchange: fault injection, retries and their limits, per-try timeouts.

A mixin of proxy/http/exchange.Exchange (it holds no state of its own: `__slots__ = ()`), kept apart so
the exchange module reads as the request/response flow and this one as what a RoutePolicy adds to it
(proxy/outbound/fault.py, retry.py, circuit_breaker.py for maxRetries and the retry budget).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.core.errors import ProxyError, UpstreamTimeout
from proxy.outbound import retry

if TYPE_CHECKING:
    from proxy.http.exchange import Exchange
    from proxy.outbound.fault import FaultPolicy

    _Base = Exchange
else:
    _Base = object


class RetrySteps(_Base):
    __slots__ = ()

    def _inject_fault(self, fault: FaultPolicy) -> bool:
        """Delay and/or abort as the rule's fault says; True when it took over the request."""
        delay = fault.delay_for()
        abort = fault.abort_for()
        if delay:
            self.flag = "DI"
            self.timer = self.proto.loop.call_later(delay, self._after_delay, abort)
            return True
        if abort is not None:
            self.fail(abort)
            return True
        return False

    def _after_delay(self, abort: ProxyError | None) -> None:
        self.timer = None
        if abort is not None:
            self.fail(abort)
            return
        try:
            self._go()
        except Exception as exc:  # our bug, in a timer callback: 500 now (see Exchange._on_admitted)
            self.fail(exc)

    def _retry_response(self, status: int) -> bool:
        """A response head arrived: retry instead of forwarding it when the policy says so."""
        policy = self.policy.retry  # type: ignore[union-attr]
        if (policy is None or self.attempt >= policy.attempts or self.replay is None
                or not policy.retries_status(status) or not self._retry_admitted()):
            return False
        self._schedule_retry()
        return True

    def _retry_admitted(self) -> bool:
        """The cluster's maxRetries or retry budget allows this request to retry (it keeps the slot until it ends)."""
        breaker = self.upstream.breaker  # type: ignore[union-attr]
        if breaker is None or self.retry_slot is not None:
            return True
        if not breaker.may_retry():
            return False
        self.retry_slot = breaker
        return True

    def _retry_failure(self, kind: int) -> bool:
        """No response (connect failure, reset, per-try timeout): retry if allowed and the request can be resent."""
        policy = self.policy.retry  # type: ignore[union-attr]
        if (policy is None or self.attempt >= policy.attempts or self.status or self.head_sent
                or not policy.retries_failure(kind)):
            return False
        if self.replay is None and (kind != retry.CONNECT_FAILURE or self.conn is not None):
            return False  # part of the request went out and is no longer in hand
        if not self._retry_admitted():
            return False
        self._schedule_retry()
        return True

    def _schedule_retry(self) -> None:
        self.attempt += 1
        self._drop_upstream()
        if self.try_timer is not None:
            self.try_timer.cancel()
        target = self.upstream
        assert target is not None
        target.release()
        if self.tried is None:
            self.tried = []
        self.tried.append((target.address, target.port))
        wait = self.policy.retry.backoff(self.attempt)  # type: ignore[union-attr]
        self.try_timer = self.proto.loop.call_later(wait, self._retry_now)

    def _retry_now(self) -> None:
        self.try_timer = None
        if self.resp_done:
            return
        repick = getattr(self.proto.shared.router, "retry_pick", None)
        try:
            if repick is not None:
                self.upstream = repick(self.upstream, self.head, self.tried, self.attempt)
            self._dispatch()
        except Exception as exc:  # a ProxyError from the pick, or our bug: either way answered now
            self.fail(exc)

    def _report_failure(self) -> None:
        """A try ended without a response (connect failure, reset, per-try timeout): outlierDetection counts it."""
        target = self.upstream
        if target is not None and target.outlier is not None:
            target.outlier.report(target.endpoint, 0)

    def _on_try_timeout(self) -> None:
        self.try_timer = None
        self._report_failure()
        try:
            if self._retry_failure(retry.PER_TRY_TIMEOUT):
                return
        except Exception as exc:  # our bug, in a timer callback: 500 now
            self.fail(exc)
            return
        timeout = self.policy.retry.per_try_timeout  # type: ignore[union-attr]
        self.fail(UpstreamTimeout(f"upstream request timeout after {timeout:g}s (per try)"))

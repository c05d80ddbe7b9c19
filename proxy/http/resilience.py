"""The resilience stage of one exchange: the route's fault injection, retries and their limits, per-try
timeouts (proxy/outbound/fault.py, retry.py; circuit_breaker.py for maxRetries and the retry budget).

An Exchange holds one `Resilience` only once the route needs it (a fault to inject, a per-try timeout to
arm, or a try that ended in a retryable way), so a request that goes out once and succeeds never makes
one. The controller owns the retry state (attempts, endpoints tried, the per-try/back-off timer, the
retry slot) and drives the exchange through the few methods of `Retried` below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from proxy.core.errors import ProxyError, UpstreamTimeout
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.outbound import retry

if TYPE_CHECKING:
    from proxy.outbound.circuit_breaker import Breaker
    from proxy.outbound.fault import FaultPolicy
    from proxy.outbound.policy import RoutePolicy

RetryPick = Callable[[Target, RequestHead, list[tuple[str, int]], int], Target]


class Retried(Protocol):
    """What the controller reads and calls on its exchange (proxy/http/exchange.Exchange)."""

    head: RequestHead | None
    upstream: Target | None
    policy: RoutePolicy | None
    replay: bytes | None
    conn: object
    status: int
    head_sent: bool
    resp_done: bool
    flag: str
    timer: asyncio.TimerHandle | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def retry_pick(self) -> RetryPick | None: ...
    def fail(self, exc: BaseException) -> None: ...
    def _go(self) -> None: ...
    def _dispatch(self) -> None: ...
    def _drop_upstream(self) -> None: ...
    def _report_failure(self) -> None: ...


class Resilience:
    __slots__ = ("ex", "attempt", "tried", "try_timer", "retry_slot")

    def __init__(self, ex: Retried) -> None:
        self.ex = ex
        self.attempt = 0  # retries sent so far
        self.tried: list[tuple[str, int]] | None = None  # endpoints tried, once a retry happens
        self.try_timer: asyncio.TimerHandle | None = None  # per-try timeout, or the back-off before a retry
        self.retry_slot: Breaker | None = None  # the cluster breaker whose retry slot this request holds

    # --- fault injection ------------------------------------------------------------------------------

    def inject_fault(self, fault: FaultPolicy) -> bool:
        """Delay and/or abort as the rule's fault says; True when it took over the request."""
        ex = self.ex
        delay = fault.delay_for()
        abort = fault.abort_for()
        if delay:
            ex.flag = "DI"
            ex.timer = ex.loop.call_later(delay, self._after_delay, abort)
            return True
        if abort is not None:
            ex.fail(abort)
            return True
        return False

    def _after_delay(self, abort: ProxyError | None) -> None:
        ex = self.ex
        ex.timer = None
        if abort is not None:
            ex.fail(abort)
            return
        try:
            ex._go()
        except Exception as exc:  # our bug, in a timer callback: 500 now (see Exchange._on_admitted)
            ex.fail(exc)

    # --- retries --------------------------------------------------------------------------------------

    def arm_try_timer(self, per_try_timeout: float) -> None:
        self.try_timer = self.ex.loop.call_later(per_try_timeout, self._on_try_timeout)

    def on_response(self, status: int) -> bool:
        """A response head arrived: retry instead of forwarding it when the policy says so."""
        ex = self.ex
        policy = ex.policy.retry  # type: ignore[union-attr]
        if (policy is None or self.attempt >= policy.attempts or ex.replay is None
                or not policy.retries_status(status) or not self._admitted()):
            return False
        self._schedule()
        return True

    def on_failure(self, kind: int) -> bool:
        """No response (connect failure, reset, per-try timeout): retry if allowed and the request can be resent."""
        ex = self.ex
        policy = ex.policy.retry  # type: ignore[union-attr]
        if (policy is None or self.attempt >= policy.attempts or ex.status or ex.head_sent
                or not policy.retries_failure(kind)):
            return False
        if ex.replay is None and (kind != retry.CONNECT_FAILURE or ex.conn is not None):
            return False  # part of the request went out and is no longer in hand
        if not self._admitted():
            return False
        self._schedule()
        return True

    def finish(self) -> None:
        """The exchange is over: give the retry slot back and stop the timer."""
        if self.retry_slot is not None:
            self.retry_slot.retry_done()
            self.retry_slot = None
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None

    def _admitted(self) -> bool:
        """The cluster's maxRetries or retry budget allows this request to retry (it keeps the slot until it ends)."""
        breaker = self.ex.upstream.breaker  # type: ignore[union-attr]
        if breaker is None or self.retry_slot is not None:
            return True
        if not breaker.may_retry():
            return False
        self.retry_slot = breaker
        return True

    def _schedule(self) -> None:
        ex = self.ex
        self.attempt += 1
        ex._drop_upstream()
        if self.try_timer is not None:
            self.try_timer.cancel()
        target = ex.upstream
        assert target is not None
        target.release()
        if self.tried is None:
            self.tried = []
        self.tried.append((target.address, target.port))
        wait = ex.policy.retry.backoff(self.attempt)  # type: ignore[union-attr]
        self.try_timer = ex.loop.call_later(wait, self._retry_now)

    def _retry_now(self) -> None:
        ex = self.ex
        self.try_timer = None
        if ex.resp_done:
            return
        repick = ex.retry_pick
        try:
            if repick is not None:
                ex.upstream = repick(ex.upstream, ex.head, self.tried, self.attempt)  # type: ignore[arg-type]
            ex._dispatch()
        except Exception as exc:  # a ProxyError from the pick, or our bug: either way answered now
            ex.fail(exc)

    def _on_try_timeout(self) -> None:
        ex = self.ex
        self.try_timer = None
        ex._report_failure()
        try:
            if self.on_failure(retry.PER_TRY_TIMEOUT):
                return
        except Exception as exc:  # our bug, in a timer callback: 500 now
            ex.fail(exc)
            return
        timeout = ex.policy.retry.per_try_timeout  # type: ignore[union-attr]
        ex.fail(UpstreamTimeout(f"upstream request timeout after {timeout:g}s (per try)"))

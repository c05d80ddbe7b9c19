"""An HTTP route's timeout, retries and fault in compiled form (used by the route generator).

Mirrors Istio's translation (pilot/pkg/networking/core/route: retry.ConvertPolicy, translateFault):
- `retries` unset: HttpRule.retry stays None and the proxy applies Istio's default (proto.xds.DEFAULT_RETRY);
  attempts 0: retries disabled; otherwise the default with attempts replaced, perTryTimeout if given, and a
  given retryOn replacing the default conditions. Numbers in retryOn are retriable status codes (and add
  `retriable-status-codes`). `backoff` is the back-off's base interval; `retryIgnorePreviousHosts` unset is
  true (the default policy's previous-hosts predicate); `retryRemoteLocalities` moves retries to the next
  locality priority.
- `timeout` unset or 0s: no timeout.
- fault percentages: `percentage.value`, else the deprecated integer `percent`, else 0 (nothing injected).
Inputs have passed validation (services/pilot/validate/resilience.py).
"""

from __future__ import annotations

from proto import xds
from proto.networking import HTTPFaultInjection, HTTPRetry, HTTPRoute
from services.pilot.validate.durations import to_ms
from services.pilot.validate.values import retry_on


def _retry(retries: HTTPRetry | None) -> xds.RetryPolicy | None:
    if retries is None:
        return None
    if retries.attempts <= 0:
        return xds.RetryPolicy(attempts=0)
    conditions, codes = list(xds.DEFAULT_RETRY_ON), list(xds.DEFAULT_RETRY.status_codes)
    if retries.retry_on:
        conditions, codes, _ = retry_on(retries.retry_on)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
    per_try = to_ms(retries.per_try_timeout) if retries.per_try_timeout is not None else None
    return xds.RetryPolicy(attempts=retries.attempts, per_try_timeout_ms=per_try, retry_on=conditions,
                           status_codes=codes, backoff_ms=to_ms(retries.backoff) if retries.backoff else 0,
                           ignore_previous_hosts=retries.retry_ignore_previous_hosts is not False,
                           remote_localities=bool(retries.retry_remote_localities))


def _fault(fault: HTTPFaultInjection | None) -> xds.FaultPolicy | None:
    if fault is None:
        return None
    out = xds.FaultPolicy()
    if fault.delay is not None and fault.delay.fixed_delay is not None:
        out.delay_ms = to_ms(fault.delay.fixed_delay)
        if fault.delay.percentage is not None:
            out.delay_percent = fault.delay.percentage.value
        else:
            out.delay_percent = float(fault.delay.percent or 0)
    if fault.abort is not None and fault.abort.http_status is not None:
        out.abort_status = fault.abort.http_status
        out.abort_percent = fault.abort.percentage.value if fault.abort.percentage is not None else 0.0
    return out


def resilience(route: HTTPRoute) -> dict[str, object]:
    """HttpRule keyword arguments: timeout_ms, retry, fault."""
    timeout = to_ms(route.timeout) if route.timeout is not None else 0
    return {"timeout_ms": timeout or None, "retry": _retry(route.retries), "fault": _fault(route.fault)}

"""Checks of an HTTP route's `timeout`, `retries` and `fault`, after Istio's validateHTTPRoute,
validateHTTPRetry and validateHTTPFaultInjection (pkg/config/validation).

Durations are Istio's (durations.py): at least 1 ms and whole milliseconds; "0s" on `timeout` is
accepted and means no timeout (Envoy's 0).
Not supported yet (rejected): the retryOn conditions retriable-headers, envoy-ratelimited and
http3-post-connect-failure (values.py). Fields Isthmus does not declare (exponentialDelay, grpcStatus,
http2Error, ...) are rejected when the document is decoded.
"""

from __future__ import annotations

from proto.networking import HTTPFaultInjection, HTTPRetry, HTTPRoute
from services.pilot.validate.checks import check_percent
from services.pilot.validate.durations import duration_ms
from services.pilot.validate.findings import Findings
from services.pilot.validate.values import retry_on


def _retries(retries: HTTPRetry, path: str, f: Findings) -> None:
    if retries.attempts < 0:
        f.error(f"{path}.attempts", "attempts cannot be negative")
    elif retries.attempts == 0 and (retries.per_try_timeout is not None or retries.retry_on is not None):
        f.warn(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if retries.per_try_timeout is not None:
        duration_ms(retries.per_try_timeout, f"{path}.perTryTimeout", f)
    if retries.backoff is not None:
        duration_ms(retries.backoff, f"{path}.backoff", f)
    if retries.retry_on is not None:
        for problem in retry_on(retries.retry_on)[2]:
            f.error(f"{path}.retryOn", problem)


def _fault(fault: HTTPFaultInjection, path: str, f: Findings) -> None:
    if fault.delay is None and fault.abort is None:
        f.error(path, "HTTP fault injection must have an abort and/or a delay")
    delay = fault.delay
    if delay is not None:
        dpath = f"{path}.delay"
        if delay.fixed_delay is None:
            f.error(f"{dpath}.fixedDelay", "fixedDelay is required (exponentialDelay is not supported yet)")
        else:
            duration_ms(delay.fixed_delay, f"{dpath}.fixedDelay", f)
        if delay.percentage is not None:
            check_percent(delay.percentage.value, f"{dpath}.percentage.value", f)
        elif delay.percent is not None:
            check_percent(delay.percent, f"{dpath}.percent", f)
        else:
            f.warn(dpath, "no percentage: no request will be delayed")
    abort = fault.abort
    if abort is not None:
        apath = f"{path}.abort"
        if abort.http_status is None:
            f.error(f"{apath}.httpStatus", "httpStatus is required (grpcStatus and http2Error are not supported yet)")
        elif not 200 <= abort.http_status <= 599:
            f.error(f"{apath}.httpStatus", f"invalid abort http status {abort.http_status} (200..599)")
        if abort.percentage is not None:
            check_percent(abort.percentage.value, f"{apath}.percentage.value", f)
        else:
            f.warn(apath, "no percentage: no request will be aborted")


def http_resilience(route: HTTPRoute, path: str, f: Findings) -> None:
    if route.timeout is not None:
        duration_ms(route.timeout, f"{path}.timeout", f, allow_zero=True)
    if route.retries is not None:
        _retries(route.retries, f"{path}.retries", f)
    if route.fault is not None:
        _fault(route.fault, f"{path}.fault", f)

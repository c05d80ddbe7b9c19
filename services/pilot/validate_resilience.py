"""Checks of an HTTP route's `timeout`, `retries` and `fault`, after Istio's validateHTTPRoute,
validateHTTPRetry and validateHTTPFaultInjection (pkg/config/validation).

Durations are what Istio's YAML accepts (Go's time.ParseDuration, as protobuf jsonpb reads a Duration):
decimal numbers with units h, m, s, ms, us, ns, e.g. "1.5s", "250ms", "1m30s". Istio requires at least
1 ms and whole milliseconds; "0s" on `timeout` is accepted and means no timeout (Envoy's 0).
Not supported yet (rejected): the retryOn conditions retriable-headers, envoy-ratelimited and
http3-post-connect-failure. Fields Isthmus does not declare (exponentialDelay, grpcStatus, http2Error,
...) are rejected when the document is decoded.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from proto.networking import HTTPFaultInjection, HTTPRetry, HTTPRoute

if TYPE_CHECKING:
    from services.pilot.validate_rules import Findings

_UNIT_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000,
            "us": 1_000, "µs": 1_000, "μs": 1_000, "ns": 1}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")

RETRY_ON = frozenset(("5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
                      "retriable-status-codes", "cancelled", "deadline-exceeded", "internal",
                      "resource-exhausted", "unavailable"))
RETRY_ON_NOT_YET = frozenset(("retriable-headers", "envoy-ratelimited", "http3-post-connect-failure"))


def parse_duration(text: str) -> int:
    """Nanoseconds in a Go-format duration; raises ValueError."""
    s = text.strip()
    if s in ("0", "+0", "-0"):
        return 0
    if s.startswith("-"):
        raise ValueError(f"duration `{text}` is negative")
    s = s.removeprefix("+")
    pos, total = 0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"`{text}` is not a duration (examples: 1.5s, 250ms, 1m30s)")
        number, unit = m.groups()
        whole, _, frac = number.partition(".")
        scale = _UNIT_NS[unit]
        total += int(whole or 0) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = m.end()
    if not s:
        raise ValueError("duration is empty")
    return total


def to_ms(text: str | None, default: int = 0) -> int:
    """Whole milliseconds of a duration that passed validation; `default` when unset."""
    return parse_duration(text) // 1_000_000 if text else default


def duration_ms(text: str, path: str, f: Findings, allow_zero: bool = False) -> int | None:
    """Milliseconds of a valid Istio duration, else None with an error recorded."""
    try:
        ns = parse_duration(text)
    except ValueError as exc:
        f.error(path, str(exc))
        return None
    if ns == 0 and allow_zero:
        return 0
    if ns < 1_000_000:
        f.error(path, f"duration `{text}` must be at least 1ms")
        return None
    if ns % 1_000_000:
        f.error(path, f"duration `{text}`: only durations to ms precision are supported")
        return None
    return ns // 1_000_000


def retry_on(text: str) -> tuple[list[str], list[int], list[str]]:
    """(conditions, status codes, problems) of a retryOn string."""
    conditions: list[str] = []
    codes: list[int] = []
    problems: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.isdigit():
            code = int(item)
            if 100 <= code <= 599:
                codes.append(code)
            else:
                problems.append(f"{item} is not a valid HTTP status code for retryOn")
        elif item in RETRY_ON:
            conditions.append(item)
        elif item in RETRY_ON_NOT_YET:
            problems.append(f"retryOn condition `{item}` is not supported yet")
        else:
            problems.append(f"`{item}` is not a valid retryOn policy (one of {', '.join(sorted(RETRY_ON))} "
                            "or an HTTP status code)")
    return conditions, codes, problems


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


def _percent(value: float, path: str, f: Findings) -> None:
    if not 0.0 <= value <= 100.0:
        f.error(path, f"percentage {value:g} is not in range 0..100")


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
            _percent(delay.percentage.value, f"{dpath}.percentage.value", f)
        elif delay.percent is not None:
            _percent(delay.percent, f"{dpath}.percent", f)
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
            _percent(abort.percentage.value, f"{apath}.percentage.value", f)
        else:
            f.warn(apath, "no percentage: no request will be aborted")


def http_resilience(route: HTTPRoute, path: str, f: Findings) -> None:
    if route.timeout is not None:
        duration_ms(route.timeout, f"{path}.timeout", f, allow_zero=True)
    if route.retries is not None:
        _retries(route.retries, f"{path}.retries", f)
    if route.fault is not None:
        _fault(route.fault, f"{path}.fault", f)

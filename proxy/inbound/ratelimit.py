"""RateLimit (isthmus.io) on the inbound side: a local token bucket per rule, as Envoy's local rate limit.

Each sidecar holds its own buckets (no coordination: N sidecars of a service allow N times the limit). A
bucket starts full with `max_tokens`; every `fill_interval` adds `tokens_per_fill`, up to `max_tokens`.
Refills are computed lazily when a request takes a token, so an idle limiter costs nothing. A request
takes one token from every rule it matches (rules whose selector the sidecar's labels satisfy); any
empty bucket answers 429 (RateLimited, flag RL) through the one rescue place, with x-ratelimit-limit,
-remaining and -reset. Allowed responses carry the same headers for the most restricted matching rule
(computed when the response head is written). docs/ratelimit.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from proto.xds import RateLimitRule
from proxy.core.errors import RateLimited
from proxy.outbound.policy import RoutePolicy
from proxy.outbound.route_match import CompiledMatch
from proxy.core.request import path_without_query
from proxy.core.request import RequestHead
from proxy.core.target import Target

Header = tuple[bytes, bytes]


class TokenBucket:
    __slots__ = ("max_tokens", "per_fill", "interval", "tokens", "last_fill", "clock")

    def __init__(self, max_tokens: int, tokens_per_fill: int, fill_interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_tokens < 1 or tokens_per_fill < 1 or fill_interval <= 0:
            raise ValueError("a token bucket needs max_tokens >= 1, tokens_per_fill >= 1, fill_interval > 0")
        self.max_tokens = max_tokens
        self.per_fill = tokens_per_fill
        self.interval = fill_interval
        self.clock = clock
        self.tokens = max_tokens
        self.last_fill = clock()

    def _refill(self, now: float) -> None:
        fills = int((now - self.last_fill) / self.interval)
        if fills > 0:
            self.tokens = min(self.max_tokens, self.tokens + fills * self.per_fill)
            self.last_fill += fills * self.interval

    def take(self) -> bool:
        """Take one token; False when the bucket is empty."""
        self._refill(self.clock())
        if self.tokens > 0:
            self.tokens -= 1
            return True
        return False

    def remaining(self) -> int:
        self._refill(self.clock())
        return self.tokens

    def reset_seconds(self) -> int:
        """Whole seconds (rounded up) until the next fill."""
        now = self.clock()
        self._refill(now)
        return max(0, math.ceil(self.last_fill + self.interval - now))

    def header_lines(self) -> bytes:
        return b"x-ratelimit-limit: %d\r\nx-ratelimit-remaining: %d\r\nx-ratelimit-reset: %d\r\n" % (
            self.max_tokens, self.remaining(), self.reset_seconds())

    def headers(self) -> list[Header]:
        return [(b"x-ratelimit-limit", b"%d" % self.max_tokens), (b"x-ratelimit-remaining", b"%d" % self.remaining()),
                (b"x-ratelimit-reset", b"%d" % self.reset_seconds())]


class RateLimitHeaders:
    """A response-header edit (RoutePolicy.response_headers) adding one bucket's x-ratelimit-* headers."""

    __slots__ = ("bucket",)
    _names = frozenset((b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset"))

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket

    def apply(self, headers: list[Header]) -> list[Header]:
        return [h for h in headers if h[0] not in self._names] + self.bucket.headers()


class Limit:
    """One rule: its matches, its bucket, and the Target an allowed request on it takes (to add headers)."""

    __slots__ = ("rule", "matches", "bucket", "target")

    def __init__(self, rule: RateLimitRule, base: Target, clock: Callable[[], float]) -> None:
        self.rule = rule
        self.matches = tuple(CompiledMatch(m) for m in rule.matches)
        self.bucket = TokenBucket(rule.max_tokens, rule.tokens_per_fill, rule.fill_interval_ms / 1000.0, clock)
        policy = RoutePolicy(None, None, None, response_headers=RateLimitHeaders(self.bucket))  # type: ignore[arg-type]
        self.target = Target(base.address, base.port, base.cluster, policy=policy)

    def applies(self, head: RequestHead, path: str) -> bool:
        if not self.matches:
            return True
        return any(m.matches(head, path) for m in self.matches)


class RateLimiter:
    """The rules one sidecar enforces, in order; `admit` picks the Target or raises RateLimited."""

    __slots__ = ("limits", "base")

    def __init__(self, rules: list[RateLimitRule], base: Target, previous: RateLimiter | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        old = previous.limits if previous is not None else ()
        self.base = base
        # An unchanged rule keeps its bucket (and tokens) across pushes; a changed one starts full.
        self.limits = tuple(next((lim for lim in old if lim.rule == r), None) or Limit(r, base, clock)
                            for r in rules)

    def admit(self, head: RequestHead) -> Target:
        path = path_without_query(head.path)
        chosen: Limit | None = None
        low = 0
        for limit in self.limits:
            if not limit.applies(head, path):
                continue
            bucket = limit.bucket
            if not bucket.take():
                raise RateLimited(bucket.header_lines())
            if chosen is None or bucket.tokens < low:
                chosen, low = limit, bucket.tokens
        return chosen.target if chosen is not None else self.base

"""Inbound RateLimit: the token bucket, the limiter's choice, and the 429 the rescue writes."""

from __future__ import annotations

import pytest

from proto.xds import ClusterConfig, Push, RateLimitRule, RouteMatch, StringMatch, WorkloadSecurity
from proxy.control.config_state import ConfigRejected, ConfigState
from proxy.core.errors import RateLimited
from proxy.http.rescue import rescue
from proxy.inbound.local_app import LocalAppRouter
from proxy.inbound.ratelimit import RateLimiter, TokenBucket
from proxy.core.request import RequestHead
from proxy.core.target import Target


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def head(path: str = "/r", method: str = "GET") -> RequestHead:
    return RequestHead(method, "reviews", 9080, path, [])


def test_bucket_starts_full_empties_and_refills_per_interval() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 2, 10.0, clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.reset_seconds() == 10
    clock.now += 9.5
    assert not bucket.take() and bucket.reset_seconds() == 1
    clock.now += 0.5  # one fill: 2 tokens
    assert bucket.remaining() == 2
    clock.now += 100.0  # many fills: capped at max_tokens
    assert bucket.remaining() == 3


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 1.0)


def test_limiter_answers_429_with_headers_once_the_bucket_is_empty() -> None:
    clock = Clock()
    base = Target("127.0.0.1", 8080, "inbound|8080||reviews")
    rule = RateLimitRule(name="ns/rl", matches=[RouteMatch(uri=StringMatch(prefix="/r"))], max_tokens=2,
                         tokens_per_fill=1, fill_interval_ms=60_000)
    limiter = RateLimiter([rule], base, clock=clock)
    allowed = limiter.admit(head())
    assert allowed is not base and allowed.address == base.address
    edited = allowed.policy.response_headers.apply([(b"x-ratelimit-limit", b"99")])
    assert edited == [(b"x-ratelimit-limit", b"2"), (b"x-ratelimit-remaining", b"1"), (b"x-ratelimit-reset", b"60")]
    limiter.admit(head())
    assert limiter.admit(head("/other")) is base  # not matched: not counted
    with pytest.raises(RateLimited) as caught:
        limiter.admit(head())
    status, flag, payload = rescue(caught.value, close=False)
    assert (status, flag) == (429, "RL")
    assert payload.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"x-ratelimit-limit: 2\r\nx-ratelimit-remaining: 0\r\nx-ratelimit-reset: 60\r\n" in payload
    assert payload.endswith(b"\r\n\r\nlocal_rate_limited\n")


def _push(seq: int, *rules: RateLimitRule) -> Push:
    return Push(epoch="e", seq=seq, version=seq, full=True, security=[WorkloadSecurity(workload="r1", version=seq)],
                clusters=[ClusterConfig(host="reviews.ns.svc.cluster.local", version=seq, ratelimits=list(rules))])


def test_router_follows_pushes_and_keeps_buckets_of_unchanged_rules() -> None:
    state = ConfigState(workload_id="r1")
    router = LocalAppRouter("127.0.0.1", 8080, "reviews", state, "ns", labels={"app": "reviews"})
    assert router.limiter is None and not router.configured  # before the first push nothing is admitted
    mine = RateLimitRule(name="ns/a", selector={"app": "reviews"}, max_tokens=1)
    other = RateLimitRule(name="ns/b", selector={"app": "ratings"}, max_tokens=1)
    state.apply(_push(1, mine, other))
    assert router.limiter is not None and [lim.rule.name for lim in router.limiter.limits] == ["ns/a"]
    router.pick(head())
    with pytest.raises(RateLimited):
        router.pick(head())
    state.apply(_push(2, mine))  # unchanged rule: still empty
    with pytest.raises(RateLimited):
        router.pick(head())
    state.apply(_push(3))
    assert router.limiter is None


def test_a_push_with_a_broken_bucket_is_rejected() -> None:
    with pytest.raises(ConfigRejected):
        ConfigState().apply(_push(1, RateLimitRule(name="ns/a", max_tokens=0)))


def test_the_limits_stay_while_pilot_has_forgotten_the_workload_and_follow_it_again_once_back() -> None:
    # pilot forgets a running workload when its lease lapses while the registry is away: the RateLimits on its
    # service's cluster then select nothing of it, as its security entry is removed (and kept: 3a42c45)
    state = ConfigState(workload_id="r1")
    router = LocalAppRouter("127.0.0.1", 8080, "reviews", state, "ns", labels={"app": "reviews"})
    mine = RateLimitRule(name="ns/a", selector={"app": "reviews"}, max_tokens=1)
    state.apply(_push(1, mine))
    router.pick(head())
    forgotten = Push(epoch="e", seq=2, version=2, removed_security=["r1"],
                     clusters=[ClusterConfig(host="reviews.ns.svc.cluster.local", version=2)])
    state.apply(forgotten)
    with pytest.raises(RateLimited):  # the same bucket, still empty
        router.pick(head())
    state.apply(Push(epoch="e", seq=3, version=3, full=True,
                     clusters=[ClusterConfig(host="reviews.ns.svc.cluster.local", version=3)]))
    with pytest.raises(RateLimited):
        router.pick(head())
    state.apply(_push(4))  # registered again, no RateLimit selects it any more
    assert router.limiter is None

"""proxy/outbound/circuit_breaker.py: connectionPool limits per cluster, driven through Target."""

from __future__ import annotations

import asyncio

import pytest

from proto.xds import ClusterConfig, Endpoint, Keepalive, PoolLimits, Push, RetryBudget, SubsetPolicy
from proxy.control.config_state import ConfigState
from proxy.core.errors import Overflow
from proxy.outbound.circuit_breaker import Breaker, RequestWindow
from proxy.outbound.router import MeshRouter
from proxy.core.request import RequestHead
from proxy.core.target import Target

REVIEWS = "reviews.default.svc.cluster.local"


def target(breaker: Breaker) -> Target:
    return Target("127.0.0.1", 1, "outbound|9080||reviews", breaker=breaker)


def test_requests_beyond_max_connections_wait_and_beyond_max_pending_overflow():
    breaker = Breaker("c", PoolLimits(max_connections=1, max_pending=1))
    first, second, third = target(breaker), target(breaker), target(breaker)
    assert first.enter(lambda: None) is True
    assert second.enter(lambda: None) is False  # queued
    with pytest.raises(Overflow) as info:
        third.enter(lambda: None)
    assert (info.value.status, info.value.flag) == (503, "UO")
    assert breaker.stats() == {"max_connections": 1, "max_pending": 1, "active": 1, "pending": 1, "overflows": 1,
                               "retrying": 0, "retry_limit": 0, "retry_overflows": 0}


async def test_a_freed_slot_goes_to_the_oldest_waiting_request():
    breaker = Breaker("c", PoolLimits(max_connections=1, max_pending=5))
    resumed: list[str] = []
    first, second, third = target(breaker), target(breaker), target(breaker)
    first.enter(lambda: resumed.append("first"))
    second.enter(lambda: resumed.append("second"))
    third.enter(lambda: resumed.append("third"))
    first.release()
    await asyncio.sleep(0)
    assert resumed == ["second"] and breaker.active == 1 and len(breaker.waiting) == 1
    assert second.enter(lambda: None) is True  # already holds the slot: no second count
    second.release()
    await asyncio.sleep(0)
    third.release()
    assert resumed == ["second", "third"] and breaker.active == 0


def test_a_waiting_request_given_up_leaves_the_queue_and_release_twice_does_nothing():
    breaker = Breaker("c", PoolLimits(max_connections=1, max_pending=1))
    first, second = target(breaker), target(breaker)
    first.enter(lambda: None)
    second.enter(lambda: None)
    second.release()  # client gone while waiting
    second.release()
    assert len(breaker.waiting) == 0 and breaker.active == 1
    first.release()
    first.release()
    assert breaker.active == 0


def test_zero_limits_mean_unlimited_and_connect_timeout_is_in_seconds():
    breaker = Breaker("c", PoolLimits(connect_timeout_ms=250))
    targets = [target(breaker) for _ in range(2000)]
    assert all(t.enter(lambda: None) for t in targets)
    assert breaker.connect_timeout == 0.25 and Breaker("c", PoolLimits()).connect_timeout is None


def _router(**cluster) -> MeshRouter:
    state = ConfigState()
    config = ClusterConfig(host=REVIEWS, version=1, ports=[9080, 9090],
                           endpoints=[Endpoint(address="10.0.0.1", labels={"v": "1"})], **cluster)
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[config]))
    return MeshRouter(state)


def head(port: int = 9080) -> RequestHead:
    return RequestHead("GET", "reviews", port, "/", [])


def test_without_limits_targets_carry_no_breaker():
    assert _router().pick(head()).breaker is None


def test_one_breaker_per_cluster_port_shared_by_its_requests_and_port_level_limits_apply():
    router = _router(limits=PoolLimits(max_connections=3), port_limits={9090: PoolLimits(max_connections=7)})
    a, b = router.pick(head()), router.pick(head())
    assert a.breaker is b.breaker and a.breaker.max_active == 3
    assert a.breaker.name == f"outbound|9080||{REVIEWS}"
    assert router.pick(head(9090)).breaker.max_active == 7


def test_a_subset_with_its_own_policy_has_its_own_limits():
    from proto.xds import RouteConfig, HttpRule, WeightedDestination
    state = ConfigState()
    config = ClusterConfig(host=REVIEWS, version=1, ports=[9080], limits=PoolLimits(max_connections=3),
                           subsets=[SubsetPolicy(name="a", labels={"v": "1"}),
                                    SubsetPolicy(name="b", labels={"v": "1"}, lb="RANDOM")],
                           endpoints=[Endpoint(address="10.0.0.1", labels={"v": "1"})])
    routes = [RouteConfig(host=REVIEWS, version=1, rules=[HttpRule(
        matches=[], destinations=[WeightedDestination(host=REVIEWS, subset="a")])])]
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[config], routes=routes))
    assert MeshRouter(state).pick(head()).breaker.max_active == 3
    routes[0].rules[0].destinations[0].subset = "b"
    state.apply(Push(epoch="e", seq=2, version=2, clusters=[config], routes=[routes[0]]))
    assert MeshRouter(state).pick(head()).breaker is None


def test_a_push_with_negative_limits_is_rejected():
    from proxy.control.config_state import ConfigRejected
    with pytest.raises(ConfigRejected, match="non-negative"):
        _router(limits=PoolLimits(max_connections=-1))


def test_a_push_keeps_the_breaker_of_a_cluster_whose_limits_did_not_change():
    state = ConfigState()
    limits = PoolLimits(max_connections=1)

    def push(seq: int, lim: PoolLimits, n: int) -> None:
        state.apply(Push(epoch="e", seq=seq, version=seq, full=True, clusters=[ClusterConfig(
            host=REVIEWS, version=seq, ports=[9080], limits=lim,
            endpoints=[Endpoint(address=f"10.0.0.{i}") for i in range(1, n + 1)])]))

    push(1, limits, 1)
    router = MeshRouter(state)
    first = router.pick(head()).breaker
    push(2, limits, 2)  # an endpoint more: same limits, same breaker (and its count in flight)
    assert router.pick(head()).breaker is first
    push(3, PoolLimits(max_connections=2), 2)
    assert router.pick(head()).breaker is not first


def test_http2_max_requests_counts_in_flight_and_waiting_and_overflows_without_queueing():
    breaker = Breaker("c", PoolLimits(max_connections=1, max_pending=10, max_requests=2))
    first, second, third = target(breaker), target(breaker), target(breaker)
    assert first.enter(lambda: None) is True
    assert second.enter(lambda: None) is False  # waits: one in flight + one waiting = 2
    with pytest.raises(Overflow, match="http2MaxRequests"):
        third.enter(lambda: None)  # the queue has room, maxRequests does not


def test_max_retries_caps_requests_retrying_at_once():
    breaker = Breaker("c", PoolLimits(max_retries=2))
    assert breaker.may_retry() and breaker.may_retry()
    assert not breaker.may_retry()
    breaker.retry_done()
    assert breaker.may_retry()
    assert breaker.stats()["retry_overflows"] == 1 and breaker.stats()["retry_limit"] == 2


def test_retry_budget_is_a_share_of_active_requests_with_a_floor():
    """Envoy's example: 20% with a minimum of 3 allows 5 retries with 25 requests active, 3 with 2."""
    breaker = Breaker("c", PoolLimits(max_retries=1, retry_budget=RetryBudget(percent=20.0, min_concurrency=3)))
    targets = [target(breaker) for _ in range(25)]
    for t in targets:
        assert t.enter(lambda: None)
    assert breaker.retry_limit() == 5  # the budget replaces maxRetries
    assert [breaker.may_retry() for _ in range(6)] == [True] * 5 + [False]
    for t in targets[2:]:
        t.release()
    assert breaker.retry_limit() == 3


def test_retry_budget_interval_counts_requests_started_in_the_window():
    window = RequestWindow(1.0)
    for i in range(50):
        window.add(100.005 + i * 0.01)  # 50 requests over half a second, 10 per tenth
    assert window.count(100.6) == 50
    assert window.count(101.35) == 10  # only the last tenth (100.4..100.5) is within a second
    assert window.count(105.0) == 0
    breaker = Breaker("c", PoolLimits(retry_budget=RetryBudget(percent=10.0, min_concurrency=1, interval_ms=60_000)))
    for _ in range(40):
        t = target(breaker)
        t.enter(lambda: None)
        t.release()  # finished: none in flight, but all 40 started within the interval
    assert breaker.retry_limit() == 4


def test_connection_settings_become_a_conn_policy_only_when_set():
    assert Breaker("c", PoolLimits(max_connections=5)).conn_policy is None
    policy = Breaker("outbound|9080||r", PoolLimits(max_requests_per_connection=1, idle_timeout_ms=1500,
                                                  max_connection_duration_ms=60_000,
                                                  keepalive=Keepalive(time_s=30, interval_s=5, probes=3))).conn_policy
    assert policy is not None
    assert (policy.max_requests, policy.idle_timeout, policy.max_duration, policy.keepalive) == (1, 1.5, 60.0,
                                                                                                (30, 5, 3))
    assert policy.key("10.0.0.1", 80) == ("10.0.0.1", 80, "outbound|9080||r")

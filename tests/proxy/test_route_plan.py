"""proxy/outbound/plan.py through MeshRouter.pick: a simple route is compiled once per table, gives the
Target every stage would, is dropped by a push, and is never made for a route whose answer may vary."""

from __future__ import annotations

import pytest

from proto.xds import (
    ClusterConfig, Endpoint, FaultPolicy, HeaderOperations, Headers, HttpRule, MirrorPolicy, OutlierPolicy, Push,
    RouteConfig, RouteMatch, StringMatch, WeightedDestination,
)
from proxy.control.config_state import ConfigState
from proxy.core.errors import NoHealthyUpstream
from proxy.core.request import RequestHead
from proxy.outbound import plan as plan_module
from proxy.outbound.plan import Plan
from proxy.outbound.router import MeshRouter

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"


def cluster(host: str = REVIEWS, *addresses: str, version: int = 1, **fields) -> ClusterConfig:
    eps = [Endpoint(address=a, ports={9080: 15006}, labels={"version": "v1"}) for a in addresses or ("10.0.0.1",)]
    return ClusterConfig(host=host, version=version, ports=[9080], endpoints=eps, **fields)


def route(version: int = 1, dest: str = REVIEWS, **rule) -> RouteConfig:
    rule.setdefault("destinations", [WeightedDestination(host=dest)])
    return RouteConfig(host=REVIEWS, version=version, rules=[HttpRule(**rule)])


def setup(clusters, routes=()) -> tuple[ConfigState, MeshRouter]:
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=list(clusters), routes=list(routes)))
    return state, MeshRouter(state)


def head(path: str = "/") -> RequestHead:
    return RequestHead("GET", "reviews", 9080, path, [])


def planned(router: MeshRouter) -> Plan | None:
    router.pick(head())
    return router._plans[("reviews", 9080)]


def fields(target) -> tuple:
    return (target.address, target.endpoint, target.port, target.cluster, target.balancer, target.policy,
            target.breaker, target.outlier, target.counts)


@pytest.mark.parametrize("routes", [(), (route(timeout_ms=300),)], ids=["no route", "one match-less rule"])
def test_a_simple_route_is_planned_and_the_plan_gives_what_every_stage_gives(routes):
    _, router = setup([cluster(REVIEWS, "10.0.0.1", "10.0.0.2", lb="LEAST_REQUEST")], routes)
    assert isinstance(planned(router), Plan)
    addresses = set()
    for _ in range(20):
        via_plan, via_stages = router.pick(head()), router._pick(router.source.table, head())
        assert fields(via_plan)[2:] == fields(via_stages)[2:]  # the endpoint itself is the balancer's (random) pick
        assert via_plan.cluster == f"outbound|9080||{REVIEWS}" and via_plan.port == 15006 and via_plan.counts
        addresses.add(via_plan.address)
    assert addresses == {"10.0.0.1", "10.0.0.2"}


def test_a_config_push_drops_the_plans_of_the_old_table():
    state, router = setup([cluster(REVIEWS, "10.0.0.1"), cluster(RATINGS, "10.0.1.1")], [route()])
    assert planned(router) is not None
    assert router.pick(head()).address == "10.0.0.1"
    state.apply(Push(epoch="e", seq=2, version=2, routes=[route(version=2, dest=RATINGS)]))  # the route moves
    assert router.pick(head()).address == "10.0.1.1"
    assert router.pick(head()).cluster == f"outbound|9080||{RATINGS}"
    state.apply(Push(epoch="e", seq=3, version=3, clusters=[cluster(RATINGS, "10.0.1.2", version=2)]))  # endpoints
    assert router.pick(head()).address == "10.0.1.2"
    state.apply(Push(epoch="e", seq=4, version=4, clusters=[ClusterConfig(
        host=RATINGS, version=3, ports=[9080], endpoints=[])]))  # nothing left: the stages' error, not a stale plan
    with pytest.raises(NoHealthyUpstream):
        router.pick(head())


@pytest.mark.parametrize("routes, clusters", [
    ([route(matches=[RouteMatch(uri=StringMatch(prefix="/"))])], None),
    ([route(destinations=[WeightedDestination(host=REVIEWS, weight=50), WeightedDestination(host=RATINGS, weight=50)])],
     None),
    ([route(destinations=[WeightedDestination(host=REVIEWS, subset="v1")])], None),
    ([route(destinations=[WeightedDestination(host=REVIEWS, headers=Headers(request=HeaderOperations(set={"a": "b"})))])],
     None),
    ([route(mirrors=[MirrorPolicy(host=RATINGS)])], None),
    ([route(fault=FaultPolicy(abort_status=503, abort_percent=50.0))], None),
    ([RouteConfig(host=REVIEWS, version=1, rules=[HttpRule(destinations=[WeightedDestination(host=REVIEWS)])] * 2)],
     None),
    ((), [cluster(REVIEWS, "10.0.0.1", outlier=OutlierPolicy())]),
], ids=["match", "several destinations", "subset", "destination headers", "mirror", "fault", "two rules",
        "outlier detection"])
def test_no_plan_where_the_answer_may_vary_per_request(routes, clusters):
    from proto.xds import SubsetPolicy
    clusters = clusters or [cluster(REVIEWS, "10.0.0.1", subsets=[SubsetPolicy(name="v1", labels={"version": "v1"})]),
                            cluster(RATINGS, "10.0.1.1")]
    _, router = setup(clusters, routes)
    assert planned(router) is None
    assert router.pick(head()).address in {"10.0.0.1", "10.0.1.1"}  # the stages still answer


def test_one_endpoint_counts_nothing_and_two_count_in_flight():
    _, router = setup([cluster(REVIEWS, "10.0.0.1", lb="LEAST_REQUEST")])
    for _ in range(2):  # the stages' Target, then the plan's
        target = router.pick(head())
        target.acquire()
        assert not target.counts and target.balancer.active[id(target.endpoint)] == 0
    _, router = setup([cluster(REVIEWS, "10.0.0.1", "10.0.0.2", lb="LEAST_REQUEST")])
    for _ in range(2):
        target = router.pick(head())
        target.acquire()
        assert target.counts and target.balancer.active[id(target.endpoint)] >= 1
        target.release()


def test_plans_are_bounded(monkeypatch):
    monkeypatch.setattr(plan_module, "PLAN_CACHE_SIZE", 2)
    monkeypatch.setattr("proxy.outbound.router.PLAN_CACHE_SIZE", 2)
    _, router = setup([cluster()])
    for host in ("reviews", "reviews.default", "reviews.default.svc", REVIEWS):
        router.pick(RequestHead("GET", host, 9080, "/", []))
        assert len(router._plans) <= 2


def test_the_query_is_left_out_only_where_a_rule_matches_on_the_path():
    exact = route(matches=[RouteMatch(uri=StringMatch(exact="/a"))])
    _, router = setup([cluster()], [exact])
    assert router.pick(head("/a?x=1")).address == "10.0.0.1"
    assert router.source.table.routes[REVIEWS].needs_path
    _, router = setup([cluster()], [route()])
    assert not router.source.table.routes[REVIEWS].needs_path
    assert router.pick(head("/a?x=1")).address == "10.0.0.1"


@pytest.mark.parametrize("lb", ["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"])
def test_one_endpoint_under_a_pure_balancer_hands_out_one_target_that_gives_what_every_stage_gives(lb):
    _, router = setup([cluster(REVIEWS, "10.0.0.1", lb=lb)], [route(timeout_ms=300)])
    plan = planned(router)
    assert plan is not None and plan.target is not None
    first, second = router.pick(head()), router.pick(head())
    assert first is second is plan.target  # no Target made per request
    assert fields(first) == fields(router._pick(router.source.table, head()))
    first.acquire()
    first.release()  # holds nothing: an in-flight count or breaker slot would make it per request
    assert not first.held and first.slot == 0


def test_no_shared_target_where_the_pick_may_differ_or_hold_state():
    from proto.xds import HashPolicy, PoolLimits
    hashed = cluster(REVIEWS, "10.0.0.1", lb="CONSISTENT_HASH",
                     hash=HashPolicy(cookie="c", cookie_ttl_s=10.0))  # may make a cookie per request
    limited = cluster(REVIEWS, "10.0.0.1", limits=PoolLimits(max_connections=1))
    two = cluster(REVIEWS, "10.0.0.1", "10.0.0.2", lb="ROUND_ROBIN")
    for config in (hashed, limited, two):
        _, router = setup([config])
        plan = planned(router)
        assert plan is not None and plan.target is None
        assert router.pick(head()) is not router.pick(head())


def test_only_a_policy_with_nothing_to_run_before_sending_takes_the_short_start():
    from proto.xds import RetryPolicy
    from proxy.outbound.policy import DEFAULT_POLICY, compile_policy
    dest = [WeightedDestination(host=REVIEWS)]
    assert DEFAULT_POLICY.plain  # Istio's default retries and a timeout need nothing before the first send
    assert compile_policy(HttpRule(destinations=dest, timeout_ms=300)).plain
    assert not compile_policy(HttpRule(destinations=dest, retry=RetryPolicy(attempts=2, per_try_timeout_ms=100))).plain
    assert not compile_policy(HttpRule(destinations=dest, fault=FaultPolicy(abort_status=503, abort_percent=50.0))).plain
    assert not compile_policy(HttpRule(destinations=dest), edits=(object(), None)).plain  # type: ignore[arg-type]

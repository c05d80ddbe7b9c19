"""proxy/outbound/headers.py and the router's per-destination policies: Istio header operations."""

from __future__ import annotations

from collections import Counter

from proto import xds
from proxy.outbound.headers import HeaderEdit, edits
from proxy.outbound.policy import DEFAULT_POLICY
from tests.proxy.test_router import REVIEWS, head, reviews_cluster, router_for

ORIGINAL = [(b"host", b"reviews"), (b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"b")]


def ops(**fields) -> xds.HeaderOperations:
    return xds.HeaderOperations(**fields)


def test_remove_then_set_replaces_every_value_then_add_appends():
    edit = HeaderEdit([ops(set={"x-a": "new"}, add={"x-b": "more"}, remove=["host"])])
    assert edit.apply(ORIGINAL) == [(b"x-b", b"b"), (b"x-a", b"new"), (b"x-b", b"more")]
    assert ORIGINAL[0] == (b"host", b"reviews")  # the input list is left as it was


def test_the_rules_operations_run_after_the_destinations_so_its_set_wins():
    request, response = edits(xds.Headers(request=ops(set={"x-v": "dest"}, add={"x-d": "1"})),
                              xds.Headers(request=ops(set={"x-v": "rule"})))
    assert response is None
    assert request.apply([]) == [(b"x-d", b"1"), (b"x-v", b"rule")]


def test_nothing_to_do_compiles_to_none():
    assert edits(None, None) == (None, None)
    assert edits(xds.Headers(request=ops()), None) == (None, None)


def test_rule_headers_make_the_policy_shaped_and_destination_headers_give_each_destination_its_policy():
    v1 = xds.WeightedDestination(host=REVIEWS, subset="v1", weight=50,
                                 headers=xds.Headers(response=ops(set={"x-version": "v1"})))
    v2 = xds.WeightedDestination(host=REVIEWS, subset="v2", weight=50)
    rule = xds.HttpRule(destinations=[v1, v2], headers=xds.Headers(request=ops(add={"x-r": "1"})))
    router = router_for([reviews_cluster()], [xds.RouteConfig(host=REVIEWS, version=1, rules=[rule])])
    seen = Counter()
    for _ in range(200):
        target = router.pick(head())
        policy = target.policy
        assert policy.shaped and policy.request_headers.apply([]) == [(b"x-r", b"1")]
        subset = target.cluster.split("|")[2]
        response = policy.response_headers.apply([]) if policy.response_headers else []
        assert response == ([(b"x-version", b"v1")] if subset == "v1" else [])
        seen[subset] += 1
    assert seen["v1"] > 50 and seen["v2"] > 50


def test_without_headers_the_router_hands_out_the_shared_default_policy():
    rule = xds.HttpRule(destinations=[xds.WeightedDestination(host=REVIEWS)])
    router = router_for([reviews_cluster()], [xds.RouteConfig(host=REVIEWS, version=1, rules=[rule])])
    policy = router.pick(head()).policy
    assert policy is DEFAULT_POLICY and not policy.shaped and policy.response_headers is None

"""proxy/outbound/route_match.py: compiled matchers, first-match rules and weighted destination picks."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proto.xds import HttpRule, RouteConfig, RouteMatch, StringMatch, WeightedDestination
from proxy.outbound.route_match import CompiledMatch, CompiledRoute, CompiledRule, path_without_query
from proxy.outbound.target import RequestHead


def head(path: str = "/", method: str = "GET", port: int = 80, **headers: str) -> RequestHead:
    items = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return RequestHead(method, "reviews", port, path, items)


def matches(match: RouteMatch, request: RequestHead) -> bool:
    return CompiledMatch(match).matches(request, path_without_query(request.path))


def dest(subset: str, weight: int = 100) -> WeightedDestination:
    return WeightedDestination(host="reviews.default.svc.cluster.local", subset=subset, weight=weight)


def test_uri_exact_ignores_the_query_string():
    m = RouteMatch(uri=StringMatch(exact="/api/v1"))
    assert matches(m, head("/api/v1?page=2"))
    assert not matches(m, head("/api/v1/x"))


def test_uri_prefix_matches_the_start_of_the_full_path():
    m = RouteMatch(uri=StringMatch(prefix="/api"))
    assert matches(m, head("/api/v1")) and matches(m, head("/api?x=1"))
    assert not matches(m, head("/other/api"))
    assert matches(RouteMatch(uri=StringMatch(prefix="/a?x")), head("/a?x=1"))


def test_uri_regex_must_match_the_whole_path_without_query():
    m = RouteMatch(uri=StringMatch(regex=r"/users/\d+"))
    assert matches(m, head("/users/42?full=1"))
    assert not matches(m, head("/users/42/orders"))


def test_header_exact_prefix_and_regex():
    assert matches(RouteMatch(headers={"end-user": StringMatch(exact="jason")}), head(end_user="jason"))
    assert not matches(RouteMatch(headers={"end-user": StringMatch(exact="jason")}), head(end_user="jasonx"))
    assert matches(RouteMatch(headers={"user-agent": StringMatch(prefix="curl/")}), head(user_agent="curl/8.1"))
    assert matches(RouteMatch(headers={"x-tier": StringMatch(regex="gold|silver")}), head(x_tier="silver"))
    assert not matches(RouteMatch(headers={"x-tier": StringMatch(regex="gold|silver")}), head(x_tier="silverish"))


def test_a_missing_header_never_matches():
    assert not matches(RouteMatch(headers={"end-user": StringMatch(prefix="")}), head())


def test_repeated_header_values_are_joined_with_commas_before_matching():
    request = RequestHead("GET", "h", 80, "/", [(b"x-tag", b"a"), (b"x-tag", b"b")])
    assert matches(RouteMatch(headers={"x-tag": StringMatch(exact="a,b")}), request)


def test_every_condition_of_a_match_must_hold():
    m = RouteMatch(method=StringMatch(exact="POST"), port=9080, uri=StringMatch(prefix="/"))
    assert matches(m, head(method="POST", port=9080))
    assert not matches(m, head(method="GET", port=9080))
    assert not matches(m, head(method="POST", port=80))


def test_a_rule_needs_any_one_of_its_matches_and_a_rule_without_matches_takes_everything():
    rule = CompiledRule(HttpRule(matches=[RouteMatch(port=1), RouteMatch(method=StringMatch(exact="GET"))],
                                 destinations=[dest("v1")]))
    assert rule.applies(head(method="GET"), "/")
    assert not rule.applies(head(method="PUT"), "/")
    assert CompiledRule(HttpRule(destinations=[dest("v1")])).applies(head(method="PUT"), "/")


def test_the_first_matching_rule_wins():
    route = CompiledRoute(RouteConfig(host="reviews", version=1, rules=[
        HttpRule(name="jason", matches=[RouteMatch(headers={"end-user": StringMatch(exact="jason")})],
                 destinations=[dest("v2")]),
        HttpRule(name="api", matches=[RouteMatch(uri=StringMatch(prefix="/"))], destinations=[dest("v3")]),
        HttpRule(name="rest", destinations=[dest("v1")]),
    ]))
    assert route.rule_for(head(end_user="jason"), "/").name == "jason"
    assert route.rule_for(head(), "/").name == "api"


def test_weighted_picks_follow_80_10_10_within_three_points():
    random.seed(12252)
    rule = CompiledRule(HttpRule(destinations=[dest("v1", 80), dest("v2", 10), dest("v3", 10)]))
    counts = Counter(rule.pick().subset for _ in range(20_000))
    for subset, share in (("v1", 80), ("v2", 10), ("v3", 10)):
        assert abs(counts[subset] / 200 - share) <= 3, counts


def test_a_zero_weight_destination_is_never_picked():
    random.seed(1)
    rule = CompiledRule(HttpRule(destinations=[dest("v1", 0), dest("v2", 50), dest("v3", 0)]))
    assert {rule.pick().subset for _ in range(2_000)} == {"v2"}


def test_a_regex_that_does_not_compile_and_a_zero_weight_sum_are_rejected():
    with pytest.raises(ValueError, match="does not compile"):
        CompiledRoute(RouteConfig(host="h", version=1, rules=[
            HttpRule(matches=[RouteMatch(uri=StringMatch(regex="(open"))], destinations=[dest("v1")])]))
    with pytest.raises(ValueError, match="sum to 0"):
        CompiledRule(HttpRule(destinations=[dest("v1", 0), dest("v2", 0)]))
    with pytest.raises(ValueError, match="exact, prefix or regex"):
        CompiledMatch(RouteMatch(method=StringMatch()))

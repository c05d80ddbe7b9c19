"""proxy/outbound/route_match.py: compiled matchers, first-match rules and weighted destination picks."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proto.xds import HttpRule, RouteConfig, RouteMatch, StringMatch, WeightedDestination
from proxy.core.request import Caller, path_without_query, query_value
from proxy.outbound.route_match import CompiledMatch
from proxy.outbound.route import CompiledRoute, CompiledRule
from proxy.core.request import RequestHead


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


# --- the rest of Istio's HTTPMatchRequest ---------------------------------------------------------

def test_authority_matches_the_host_header_as_sent():
    m = RouteMatch(authority=StringMatch(prefix="reviews"))
    assert matches(m, head(host="reviews:9080"))
    assert not matches(m, head(host="ratings:9080"))
    assert not matches(RouteMatch(authority=StringMatch(exact="reviews")), head(host="reviews:9080"))
    assert not matches(m, head())  # no Host header


def test_scheme_is_http_on_a_sidecar():
    assert matches(RouteMatch(scheme=StringMatch(exact="http")), head())
    assert not matches(RouteMatch(scheme=StringMatch(exact="https")), head())


@pytest.mark.parametrize("sm,yes,no", [
    (StringMatch(exact="v2"), "/x?a=1&version=v2", "/x?version=v22"),
    (StringMatch(prefix="v"), "/x?version=v3", "/x?version=beta"),
    (StringMatch(regex="v[0-9]+"), "/x?version=v10#frag", "/x?version=v1x"),
    (StringMatch(exact=""), "/x?version", "/x?version=v1"),
    (StringMatch(), "/x?version=anything", "/x?other=v1"),  # no field: the parameter must be present
])
def test_query_params_match_the_first_value_of_the_parameter(sm, yes, no):
    m = RouteMatch(query_params={"version": sm})
    assert matches(m, head(yes)) and not matches(m, head(no))
    assert not matches(m, head("/x"))


def test_without_headers_requires_that_none_of_them_match():
    m = RouteMatch(without_headers={"x-canary": StringMatch(exact="true"), "x-debug": StringMatch()})
    assert matches(m, head())
    assert matches(m, head(x_canary="false"))
    assert not matches(m, head(x_canary="true"))
    assert not matches(m, head(x_debug="1"))  # a field-less match: the header must be absent


def test_a_header_match_without_a_field_checks_presence():
    m = RouteMatch(headers={"x-user": StringMatch()})
    assert matches(m, head(x_user="")) and matches(m, head(x_user="a"))
    assert not matches(m, head())


def test_ignore_uri_case_folds_exact_and_prefix_but_not_regex():
    assert matches(RouteMatch(uri=StringMatch(exact="/API"), ignore_uri_case=True), head("/api?q=1"))
    assert matches(RouteMatch(uri=StringMatch(prefix="/Api"), ignore_uri_case=True), head("/aPI/v1"))
    assert not matches(RouteMatch(uri=StringMatch(exact="/API")), head("/api"))
    assert not matches(RouteMatch(uri=StringMatch(regex="/API"), ignore_uri_case=True), head("/api"))


def test_source_labels_and_namespace_match_the_calling_workload():
    m = RouteMatch(source_labels={"app": "frontend", "version": "v1"}, source_namespace="shop")
    caller = Caller({"app": "frontend", "version": "v1", "extra": "x"}, "shop")
    request = head()
    assert CompiledMatch(m).matches(request, "/", caller)
    assert not CompiledMatch(m).matches(request, "/", Caller({"app": "frontend", "version": "v2"}, "shop"))
    assert not CompiledMatch(m).matches(request, "/", Caller(caller.labels, "other"))
    assert not CompiledMatch(m).matches(request, "/")  # no caller known


def test_a_route_passes_the_caller_to_its_matches():
    route = CompiledRoute(RouteConfig(host="reviews", version=1, rules=[
        HttpRule(name="mine", matches=[RouteMatch(source_labels={"app": "frontend"})], destinations=[dest("v2")]),
        HttpRule(name="rest", destinations=[dest("v1")])]))
    assert route.rule_for(head(), "/", Caller({"app": "frontend"})).name == "mine"
    assert route.rule_for(head(), "/", Caller({"app": "batch"})).name == "rest"


def test_query_value_reads_undecoded_first_values():
    assert query_value("/p?a=1&a=2&b=%20", "a") == "1"
    assert query_value("/p?a=1&b=%20", "b") == "%20"
    assert query_value("/p", "a") is None and query_value("/p?ab=1", "a") is None

"""proxy/outbound/rewrite.py: uri prefix/whole-path rewrite, uriRegexRewrite, authority."""

from __future__ import annotations

import pytest

from proto import xds
from proxy.outbound.policy import DEFAULT_POLICY
from proxy.core.request import NO_CALLER
from proxy.outbound.route import CompiledRule
from proxy.core.request import RequestHead


def rule(rewrite: xds.Rewrite, *matches: xds.RouteMatch) -> CompiledRule:
    return CompiledRule(xds.HttpRule(matches=list(matches), destinations=[xds.WeightedDestination(host="h")],
                                     rewrite=rewrite))


def head(path: str, host: bytes = b"reviews") -> RequestHead:
    return RequestHead("GET", "reviews", 80, path, [(b"host", host), (b"x-a", b"1")])


def uri(**fields) -> xds.RouteMatch:
    return xds.RouteMatch(uri=xds.StringMatch(**fields))


def target(compiled: CompiledRule, path: str) -> bytes | None:
    assert compiled.policy.rewrite is not None and compiled.policy.shaped
    return compiled.policy.rewrite.target(head(path), NO_CALLER)


def test_a_rule_without_rewrite_keeps_the_shared_default_policy():
    plain = CompiledRule(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")]))
    assert plain.policy is DEFAULT_POLICY and not plain.policy.shaped and plain.local is None


def test_uri_replaces_the_matched_prefix_and_keeps_the_rest_and_query():
    r = rule(xds.Rewrite(uri="/v2/"), uri(prefix="/api/"))
    assert target(r, "/api/users?id=3") == b"/v2/users?id=3"


def test_uri_replaces_the_whole_path_for_exact_and_regex_matches_keeping_the_query():
    assert target(rule(xds.Rewrite(uri="/new"), uri(exact="/old")), "/old?q=1") == b"/new?q=1"
    assert target(rule(xds.Rewrite(uri="/new"), uri(regex="/o.d")), "/old") == b"/new"


def test_without_a_uri_match_the_leading_slash_is_replaced_as_envoy_does():
    assert target(rule(xds.Rewrite(uri="/v2")), "/ratings") == b"/v2ratings"


def test_with_matches_of_different_kinds_the_matching_one_decides():
    r = rule(xds.Rewrite(uri="/x"), uri(prefix="/long/prefix"), uri(exact="/e"))
    assert target(r, "/long/prefix/tail") == b"/x/tail"
    assert target(r, "/e?z") == b"/x?z"


def test_uri_regex_rewrite_replaces_every_match_with_re2_groups():
    r = rule(xds.Rewrite(regex=r"^/svc/([^/]+)/(.*)$", regex_rewrite=r"/\2/instance/\1"))
    assert target(r, "/svc/abc/get?q=1") == b"/get/instance/abc?q=1"
    r = rule(xds.Rewrite(regex="o", regex_rewrite=r"0\\"))
    assert target(r, "/foo") == b"/f0\\0\\"


def test_authority_replaces_the_host_header_only():
    r = rule(xds.Rewrite(authority="ratings.prod:8080"))
    rw = r.policy.rewrite
    assert rw.target(head("/a"), NO_CALLER) is None
    assert rw.headers(head("/a").headers) == [(b"x-a", b"1"), (b"host", b"ratings.prod:8080")]


def test_a_rewrite_naming_a_missing_group_is_refused_by_the_proxy():
    with pytest.raises(ValueError):
        rule(xds.Rewrite(regex="(a)", regex_rewrite=r"\2"))

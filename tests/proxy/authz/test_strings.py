"""proxy/inbound/authz/strings.py: Istio's exact / prefix / suffix / presence values."""

from __future__ import annotations

from proxy.inbound.authz.strings import values_matcher


def test_exact_prefix_suffix_and_presence_values():
    match = values_matcher(["/exact", "/pre*", "*.json"])
    assert match("/exact") and not match("/exact/")
    assert match("/prefix") and match("/pre")
    assert match("/x/data.json") and not match("/x/data.jsonp")
    assert not match("/other")


def test_presence_is_any_non_empty_value_unless_it_is_a_header_present_match():
    assert values_matcher(["*"])("anything") and not values_matcher(["*"])("")
    assert values_matcher(["*"], presence_matches_empty=True)("")


def test_matching_is_case_sensitive_unless_asked():
    assert not values_matcher(["GET"])("get")
    hosts = values_matcher(["Example.COM", "*.Example.org", "api.*"], ignore_case=True)
    assert hosts("example.com") and hosts("WWW.EXAMPLE.ORG") and hosts("API.example.net")
    assert not hosts("example.com:8080")


def test_no_values_match_nothing():
    assert not values_matcher([])("x")

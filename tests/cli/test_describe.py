"""`isthmus x describe service`'s view, from decoded resources and pilot's compiled cluster (no bus)."""

from __future__ import annotations

from isthmus.describe import describe, fqdn, host_matches, lines

TARGET = "reviews.default.svc.cluster.local"


def res(kind: str, name: str, ns: str, spec: dict) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_hosts_resolve_as_istio_reads_short_names() -> None:
    assert fqdn("reviews", "default") == TARGET and fqdn("reviews.default", "x") == TARGET
    assert host_matches("*.default.svc.cluster.local", "x", TARGET) and not host_matches("ratings", "default", TARGET)
    assert not host_matches("reviews", "prod", TARGET)  # a short name is in its resource's namespace


def test_the_view_holds_what_applies_and_not_what_does_not() -> None:
    resources = {
        "VirtualService": [res("VirtualService", "reviews", "default", {"hosts": ["reviews"]}),
                           res("VirtualService", "other", "prod", {"hosts": ["reviews"]})],
        "DestinationRule": [res("DestinationRule", "reviews", "default",
                                {"host": TARGET, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]})],
        "PeerAuthentication": [res("PeerAuthentication", "mesh", "istio-system", {"mtls": {"mode": "PERMISSIVE"}}),
                               res("PeerAuthentication", "ns", "default", {"mtls": {"mode": "STRICT"}}),
                               res("PeerAuthentication", "elsewhere", "prod", {"mtls": {"mode": "DISABLE"}})],
        "AuthorizationPolicy": [res("AuthorizationPolicy", "v1-only", "default",
                                    {"selector": {"matchLabels": {"version": "v1"}}, "action": "DENY", "rules": [{}]}),
                                res("AuthorizationPolicy", "v2-only", "default",
                                    {"selector": {"matchLabels": {"version": "v2"}}})],
    }
    compiled = {"cluster": {"host": TARGET, "ports": [9080], "endpoints": [
        {"address": "10.0.0.1", "ports": {"9080": 19080}, "labels": {"version": "v1"}},
        {"address": "10.0.0.2", "ports": {"9080": 19080}, "labels": {"version": "v1"}, "healthy": False}]},
        "route": {"host": TARGET, "rules": [{"destinations": [{"host": TARGET, "subset": "v1"}], "timeout_ms": 500}]}}
    view = describe(TARGET, "default", resources, compiled)
    assert [vs["name"] for vs in view["virtual_services"]] == ["default/reviews"]
    assert view["mtls"]["mode"] == "STRICT (default/ns)"  # the namespace's beats the mesh's
    assert [ap["name"] for ap in view["authorization_policies"]] == ["default/v1-only"]
    text = lines(view)
    assert "   Endpoints: 2 (1 healthy)" in text and "   Subset v1: version=v1" in text
    assert f"   /* -> {TARGET}|v1, timeout_ms 500" in text


def test_an_unknown_service_says_so() -> None:
    text = lines(describe(TARGET, "default", {}, {}))
    assert text[0].endswith("(pilot compiles no such service)")
    assert "mTLS: PERMISSIVE (default)" in text and "AuthorizationPolicy: none (every request is allowed)" in text

"""examples/bookinfo/reset.py: which resources a new demo deletes before it applies its own config."""

from __future__ import annotations

from typing import Any

from examples.bookinfo.reset import leftovers, replaced
from proto.config_api import AppliedResource, ApplyReply, ResourceRef


def res(kind: str, name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def names(found: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [f"{r.kind} {r.namespace}/{r.name}" for r in leftovers(found, "svc.cluster.local")]


def test_a_rate_limit_that_selects_a_demo_workload_is_a_leftover_and_others_are_not() -> None:
    found = {"RateLimit": [
        res("RateLimit", "reviews", selector={"matchLabels": {"app": "reviews"}}),
        res("RateLimit", "v2-only", selector={"matchLabels": {"app": "reviews", "version": "v2"}}),
        res("RateLimit", "everything"),  # no selector: every workload of its namespace
        res("RateLimit", "ratings", selector={"matchLabels": {"app": "ratings"}}),
        res("RateLimit", "elsewhere", "shop", selector={"matchLabels": {"app": "reviews"}}),
    ]}
    assert names(found) == ["RateLimit default/everything", "RateLimit default/reviews", "RateLimit default/v2-only"]


def test_routes_and_policies_naming_a_demo_host_in_any_form_or_namespace_are_leftovers() -> None:
    found = {
        "VirtualService": [
            res("VirtualService", "reviews", hosts=["reviews"]),  # the demo's own: replaced by its apply
            res("VirtualService", "reviews-long", "shop", hosts=["reviews.default.svc.cluster.local"]),
            res("VirtualService", "catch-all", "shop", hosts=["*.default.svc.cluster.local"]),
            res("VirtualService", "front", hosts=["frontend"]),
            res("VirtualService", "shop-reviews", "shop", hosts=["reviews"]),  # reviews.shop: not the demo's
            res("VirtualService", "ratings", hosts=["ratings"]),
        ],
        "DestinationRule": [
            res("DestinationRule", "reviews", host="reviews"),  # the demo's own
            res("DestinationRule", "reviews-cb", host="reviews.default.svc.cluster.local"),
            res("DestinationRule", "ratings", host="ratings"),
        ],
        "ServiceEntry": [res("ServiceEntry", "reviews-vm", hosts=["reviews.default.svc.cluster.local"]),
                         res("ServiceEntry", "api", hosts=["api.example.com"])],
    }
    assert names(found) == ["VirtualService default/front", "VirtualService shop/catch-all",
                            "VirtualService shop/reviews-long", "DestinationRule default/reviews-cb",
                            "ServiceEntry default/reviews-vm"]


def test_the_demos_own_resources_changed_by_a_walk_through_are_reported_as_put_back() -> None:
    reply = ApplyReply(ok=True, results=[
        AppliedResource(ref=ResourceRef(kind="DestinationRule", name="reviews"), action="unchanged"),
        AppliedResource(ref=ResourceRef(kind="VirtualService", name="reviews"), action="configured")])
    assert replaced(reply) == ["VirtualService default/reviews was changed since: back to the demo's 80/10/10 split"]


def test_authorization_and_jwt_policies_on_demo_workloads_are_leftovers_and_others_are_not() -> None:
    found = {"AuthorizationPolicy": [
        res("AuthorizationPolicy", "allow-nothing"),  # namespace-wide deny-all: would stop the demo
        res("AuthorizationPolicy", "reviews-from-frontend", selector={"matchLabels": {"app": "reviews"}}),
        res("AuthorizationPolicy", "ratings", selector={"matchLabels": {"app": "ratings"}}),
        res("AuthorizationPolicy", "shop-wide", "shop"),
    ], "RequestAuthentication": [
        res("RequestAuthentication", "frontend-jwt", selector={"matchLabels": {"app": "frontend"}}),
        res("RequestAuthentication", "elsewhere", "shop"),
    ]}
    assert names(found) == ["AuthorizationPolicy default/allow-nothing",
                            "AuthorizationPolicy default/reviews-from-frontend",
                            "RequestAuthentication default/frontend-jwt"]


def test_telemetry_on_demo_workloads_is_a_leftover_and_the_demos_own_and_the_mesh_default_are_not() -> None:
    found = {"Telemetry": [
        res("Telemetry", "bookinfo", tracing=[{"randomSamplingPercentage": 100.0}]),  # the demo's own
        res("Telemetry", "no-logs", accessLogging=[{"disabled": True}]),  # namespace-wide: would hide the logs
        res("Telemetry", "reviews-sampling", selector={"matchLabels": {"app": "reviews"}},
            tracing=[{"randomSamplingPercentage": 0.0}]),
        res("Telemetry", "ratings", selector={"matchLabels": {"app": "ratings"}}),
        res("Telemetry", "mesh-default", "istio-system", tracing=[{"randomSamplingPercentage": 1.0}]),
    ]}
    assert names(found) == ["Telemetry default/no-logs", "Telemetry default/reviews-sampling"]


def test_the_demos_own_telemetry_put_back_is_said_so() -> None:
    reply = ApplyReply(ok=True, results=[
        AppliedResource(ref=ResourceRef(kind="Telemetry", name="bookinfo"), action="configured")])
    assert replaced(reply) == ["Telemetry default/bookinfo was changed since: back to the demo's tracing and access logs"]


def test_the_demos_config_includes_its_telemetry_resource_as_istio_writes_it() -> None:
    import yaml

    from examples.bookinfo.reset import CONFIG

    [telemetry, gateway] = [list(yaml.safe_load_all(p.read_text())) for p in CONFIG if p.name == "telemetry.yaml"][0]
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1" and telemetry["kind"] == "Telemetry"
    assert telemetry["metadata"] == {"name": "bookinfo", "namespace": "default"}
    assert telemetry["spec"]["tracing"] == [{"randomSamplingPercentage": 100.0}]  # Istio's demo profile
    assert telemetry["spec"]["accessLogging"] == [{"providers": [{"name": "envoy"}, {"name": "isthmus"}]}]
    # the same at the ingress gateway, so a request entering there is traced from its first hop
    assert gateway["metadata"] == {"name": "bookinfo-ingressgateway", "namespace": "istio-system"}
    assert gateway["spec"]["selector"] == {"matchLabels": {"istio": "ingressgateway"}}
    assert gateway["spec"]["tracing"] == telemetry["spec"]["tracing"]


def test_the_demos_ingress_is_istios_bookinfo_gateway_for_the_frontend() -> None:
    import yaml

    from examples.bookinfo.reset import CONFIG, OWN

    [gateway, vs] = [list(yaml.safe_load_all(p.read_text())) for p in CONFIG if p.name == "bookinfo-gateway.yaml"][0]
    assert gateway["kind"] == "Gateway" and gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert gateway["spec"]["servers"] == [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
        {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
         "tls": {"mode": "SIMPLE", "credentialName": "bookinfo-credential"}}]  # the secret the demo stores
    assert vs["kind"] == "VirtualService" and vs["spec"]["gateways"] == ["bookinfo-gateway"]
    assert {r["route"][0]["destination"]["host"] for r in vs["spec"]["http"]} == {"frontend"}
    # every resource the demo applies is its own: a new demo replaces it, never deletes it as a leftover
    for path in CONFIG:
        for doc in yaml.safe_load_all(path.read_text()):
            assert (doc["kind"], doc["metadata"].get("namespace", "default"), doc["metadata"]["name"]) in OWN, path


def test_gateways_and_policies_at_the_demos_ingress_gateway_are_leftovers_and_others_are_not() -> None:
    found = {
        "Gateway": [
            res("Gateway", "bookinfo-gateway", selector={"istio": "ingressgateway"}),  # the demo's own
            res("Gateway", "httpbin-gateway", "shop", selector={"istio": "ingressgateway"}),  # any namespace
            res("Gateway", "by-app", selector={"app": "istio-ingressgateway"}),
            res("Gateway", "every-gateway"),  # no selector: every gateway workload
            res("Gateway", "egress", "istio-system", selector={"istio": "egressgateway"}),
            res("Gateway", "mine", selector={"istio": "ingressgateway", "team": "a"}),  # a gateway of its own
        ],
        "VirtualService": [
            res("VirtualService", "bookinfo", hosts=["*"], gateways=["bookinfo-gateway"]),  # the demo's own
            res("VirtualService", "catch-all-at-gateway", "shop", hosts=["*"], gateways=["shop/httpbin-gateway"]),
            res("VirtualService", "httpbin", "shop", hosts=["httpbin.example.com"], gateways=["httpbin-gateway"]),
        ],
        "AuthorizationPolicy": [
            res("AuthorizationPolicy", "ingress-deny", "istio-system",
                selector={"matchLabels": {"istio": "ingressgateway"}}),
            res("AuthorizationPolicy", "egress-only", "istio-system",
                selector={"matchLabels": {"istio": "egressgateway"}}),
            res("AuthorizationPolicy", "mesh-wide", "istio-system"),  # the root namespace's: mesh-wide, stays
        ],
        "RateLimit": [res("RateLimit", "edge", "istio-system", selector={"matchLabels": {"app": "istio-ingressgateway"}})],
        "Telemetry": [res("Telemetry", "bookinfo-ingressgateway", "istio-system",  # the demo's own
                          selector={"matchLabels": {"istio": "ingressgateway"}})],
    }
    assert names(found) == ["VirtualService shop/catch-all-at-gateway", "Gateway default/by-app",
                            "Gateway default/every-gateway", "Gateway shop/httpbin-gateway",
                            "RateLimit istio-system/edge", "AuthorizationPolicy istio-system/ingress-deny"]


def test_the_demos_own_gateway_resources_put_back_are_said_so() -> None:
    reply = ApplyReply(ok=True, results=[
        AppliedResource(ref=ResourceRef(kind="VirtualService", name="bookinfo"), action="configured"),
        AppliedResource(ref=ResourceRef(kind="Gateway", name="bookinfo-gateway"), action="configured")])
    assert replaced(reply) == [
        "VirtualService default/bookinfo was changed since: back to the demo's routes from the ingress gateway to "
        "the frontend",
        "Gateway default/bookinfo-gateway was changed since: back to the demo's ingress on ports 80 and 443"]

"""The Zipkin span of a sampled exchange (proxy/telemetry/spans.py): name, endpoints and the tags Envoy and
Istio set, and the bound on a tag's length."""

from __future__ import annotations

import msgspec

from proto.observations import Span
from proto.telemetry import TelemetryPolicy, TracingPolicy
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.sampling import CLIENT, SERVER, SidePolicy, side_policy
from proxy.telemetry.spans import MAX_TAG_LENGTH, build_span, site_for
from proxy.telemetry.trace_context import SpanContext

CTX = SpanContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "00f067aa0ba902b7", True)


def site(kind: str, max_tag: int = MAX_TAG_LENGTH, **labels: str):  # type: ignore[no-untyped-def]
    return site_for(kind, service="reviews", namespace="bookinfo",
                    labels=labels or {"app": "reviews", "version": "v2"}, workload="reviews-v2",
                    node_id="reviews-host-15006.bookinfo", address="10.1.2.3", service_port=9080,
                    domain_suffix="svc.cluster.local", mesh_id="cluster.local", locality="eu/eu-west-1a/r1",
                    max_tag=max_tag)


def head(path: str = "/reviews/1", **extra: bytes) -> RequestHead:
    headers = [(b"host", b"reviews:9080"), (b"user-agent", b"curl/8"), (b"x-request-id", b"rid-1"),
               *((name.replace("_", "-").encode(), value) for name, value in extra.items())]
    return RequestHead("GET", "reviews", 9080, path, headers, client="10.9.9.9")


UPSTREAM = Target("10.1.2.4", 15006, "outbound|9080|v2|reviews.bookinfo.svc.cluster.local")


def test_a_client_span_has_envoys_and_istios_tags():
    span = build_span(site(CLIENT), SidePolicy(), CTX, 1_700_000_000_000_000, 1500, head(), UPSTREAM, 200, "-", 42)
    assert (span.trace_id, span.id, span.parent_id, span.kind) == (CTX.trace_id, CTX.span_id, CTX.parent_id, "CLIENT")
    assert span.name == "reviews.bookinfo.svc.cluster.local:9080/*"  # Istio's route decorator
    assert span.local_endpoint.service_name == "reviews.bookinfo"  # Istio's <app>.<namespace>
    assert (span.remote_endpoint.ipv4, span.remote_endpoint.port) == ("10.1.2.4", 15006)
    assert span.tags == {
        "node_id": "reviews-host-15006.bookinfo", "zone": "eu-west-1a", "component": "proxy",
        "istio.canonical_service": "reviews", "istio.canonical_revision": "v2", "istio.mesh_id": "cluster.local",
        "istio.namespace": "bookinfo", "guid:x-request-id": "rid-1", "http.url": "http://reviews:9080/reviews/1",
        "http.method": "GET", "http.protocol": "HTTP/1.1", "downstream_cluster": "-", "user_agent": "curl/8",
        "peer.address": "10.9.9.9", "upstream_cluster": UPSTREAM.cluster, "upstream_cluster.name": UPSTREAM.cluster,
        "upstream_address": "10.1.2.4:15006", "http.status_code": "200", "response_flags": "-",
        "response_size": "42",
    }
    # the bus message and the Zipkin v2 JSON are the same: camelCase, no nulls
    data = msgspec.json.decode(msgspec.json.encode(span))
    assert data["traceId"] == CTX.trace_id and data["parentId"] == CTX.parent_id and "debug" not in data
    assert data["localEndpoint"] == {"serviceName": "reviews.bookinfo", "ipv4": "10.1.2.3"}
    assert msgspec.json.decode(msgspec.json.encode(span), type=Span) == span


def test_a_server_span_names_the_local_service_and_the_caller_as_remote():
    span = build_span(site(SERVER), SidePolicy(), CTX, 1, 1, head(), Target("127.0.0.1", 8080, "inbound|8080||reviews"),
                      503, "UF", 0)
    assert span.kind == "SERVER" and span.name == "reviews.bookinfo.svc.cluster.local:9080/*"
    assert span.remote_endpoint.ipv4 == "10.9.9.9"
    assert span.tags["error"] == "true" and span.tags["response_flags"] == "UF"


def test_no_response_is_an_error_and_a_4xx_is_not():
    assert build_span(site(CLIENT), SidePolicy(), CTX, 1, 1, head(), None, 0, "DC", 0).tags["error"] == "true"
    assert "error" not in build_span(site(CLIENT), SidePolicy(), CTX, 1, 1, head(), None, 404, "NR", 0).tags


def test_custom_and_header_tags_from_the_telemetry_policy():
    policy = SidePolicy(custom_tags={"team": "books"}, header_tags={"tenant": "X-Tenant", "absent": "x-none"})
    tags = build_span(site(CLIENT), policy, CTX, 1, 1, head(x_tenant=b"acme"), UPSTREAM, 200, "-", 0).tags
    assert tags["team"] == "books" and tags["tenant"] == "acme" and "absent" not in tags


def test_canonical_labels_name_the_service_as_istio_does():
    labeled = site(CLIENT, **{"service.istio.io/canonical-name": "ratings-svc", "app": "x",
                              "service.istio.io/canonical-revision": "r7"})
    span = build_span(labeled, SidePolicy(), CTX, 1, 1, head(), UPSTREAM, 200, "-", 0)
    assert span.tags["istio.canonical_service"] == "ratings-svc" and span.tags["istio.canonical_revision"] == "r7"
    assert span.local_endpoint.service_name == "ratings-svc.bookinfo"


def test_a_tag_keeps_max_tag_characters_and_is_cut_one_over():
    prefix = len("http://reviews:9080")
    at = "/" + "a" * (MAX_TAG_LENGTH - prefix - 1)
    tags = build_span(site(CLIENT), SidePolicy(), CTX, 1, 1, head(at), UPSTREAM, 200, "-", 0).tags
    assert tags["http.url"] == f"http://reviews:9080{at}" and len(tags["http.url"]) == MAX_TAG_LENGTH
    tags = build_span(site(CLIENT), SidePolicy(), CTX, 1, 1, head(at + "b"), UPSTREAM, 200, "-", 0).tags
    assert tags["http.url"] == f"http://reviews:9080{at}"  # one over: the last character is cut
    for size in (MAX_TAG_LENGTH, MAX_TAG_LENGTH + 1):  # any header-made tag is bounded the same way
        request = head()
        request.headers[1] = (b"user-agent", b"u" * size)
        tags = build_span(site(CLIENT), SidePolicy(), CTX, 1, 1, request, UPSTREAM, 200, "-", 0).tags
        assert tags["user_agent"] == "u" * MAX_TAG_LENGTH
    small = build_span(site(CLIENT, max_tag=64), SidePolicy(), CTX, 1, 1, head(at), UPSTREAM, 200, "-", 0)
    assert len(small.tags["http.url"]) == 64  # ISTHMUS_SPAN_MAX_TAG_LENGTH


def test_environment_tags_and_default_values_as_istios_customizing_tracing_example(monkeypatch):
    """Istio's "Configure tracing with Telemetry API" example: an environment tag with a defaultValue, a header
    tag with a defaultValue. Pilot pushes environment_tags and tag_defaults; the sidecar must apply them."""
    monkeypatch.setenv("ISTHMUS_TEST_ZONE_TAG", "z1")
    monkeypatch.delenv("ISTIO_META_CLUSTER_ID", raising=False)
    telemetry = TelemetryPolicy(tracing=TracingPolicy(
        custom_tags={"provider": "zipkin"}, header_tags={"group": "grp", "tenant": "x-tenant"},
        environment_tags={"cluster_id": "ISTIO_META_CLUSTER_ID", "zone_tag": "ISTHMUS_TEST_ZONE_TAG"},
        tag_defaults={"cluster_id": "Kubernetes", "group": "unknown", "zone_tag": "ignored"}))
    policy = side_policy(telemetry, 100.0, CLIENT)
    tags = build_span(site(CLIENT), policy, CTX, 1, 1, head(), UPSTREAM, 200, "-", 0).tags
    assert tags["provider"] == "zipkin" and tags["cluster_id"] == "Kubernetes" and tags["zone_tag"] == "z1"
    assert tags["group"] == "unknown" and "tenant" not in tags  # absent header: its default, else no tag
    tags = build_span(site(CLIENT), policy, CTX, 1, 1, head(grp=b"g7"), UPSTREAM, 200, "-", 0).tags
    assert tags["group"] == "g7"  # a present header wins over the default

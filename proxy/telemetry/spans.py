"""The Zipkin v2 span of one sampled exchange, built when it ends (only sampled requests pay for it).

    site_for(kind, ...) -> SpanSite          once per listener side: what all its spans share
    build_span(site, policy, ctx, timestamp, duration, head, upstream, status, flag, bytes_sent) -> Span

Names and tags as Envoy and Istio set them (Envoy source/common/tracing/http_tracer_impl.cc
finalizeDownstreamSpan / setCommonTags and tracer_impl.cc; Istio pilot's tracing.go buildServiceTags):
`node_id`, `zone`, `component: proxy`, `guid:x-request-id`, `http.url` (`http://<authority><path>`),
`http.method`, `http.protocol`, `downstream_cluster`, `user_agent`, `peer.address` (the downstream peer),
`upstream_cluster`, `upstream_cluster.name`, `upstream_address`, `http.status_code`, `response_flags`,
`response_size`, `error: true` for a 5xx or no response, `istio.canonical_service`,
`istio.canonical_revision`, `istio.mesh_id`, `istio.namespace`, and the Telemetry resource's custom tags
(literals, and request headers when present). The span is named as Istio's route decorator names it,
`<service host>:<port>/*`; localEndpoint.serviceName is Istio's service cluster `<app>.<namespace>`.
Every tag value is cut at `max_tag` characters (Envoy's max_path_tag_length, 256, applied to all tags so
a span's size is bounded whatever headers a client sends).
"""

from __future__ import annotations

from proto.observations import Span, ZipkinEndpoint, canonical_revision_of, canonical_service_of
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.sampling import CLIENT, SidePolicy
from proxy.telemetry.trace_context import SpanContext

MAX_TAG_LENGTH = 256  # ISTHMUS_SPAN_MAX_TAG_LENGTH: Envoy's max_path_tag_length default


class SpanSite:
    """What every span of one side shares: `kind` (CLIENT/SERVER), `local` (localEndpoint), `name` (the
    inbound span name; outbound spans are named per upstream), `tags` (node and Istio tags), `max_tag`."""

    __slots__ = ("kind", "local", "name", "tags", "max_tag")

    def __init__(self, kind: str, local: ZipkinEndpoint, name: str, tags: dict[str, str],
                 max_tag: int = MAX_TAG_LENGTH) -> None:
        self.kind = kind
        self.local = local
        self.name = name
        self.tags = tags
        self.max_tag = max_tag


def _endpoint(address: str, port: int | None = None, service: str | None = None) -> ZipkinEndpoint:
    if ":" in address:
        return ZipkinEndpoint(service_name=service, ipv6=address, port=port or None)
    return ZipkinEndpoint(service_name=service, ipv4=address or None, port=port or None)


def site_for(kind: str, *, service: str, namespace: str, labels: dict[str, str], workload: str, node_id: str,
             address: str, service_port: int, domain_suffix: str, mesh_id: str, locality: str = "",
             max_tag: int = MAX_TAG_LENGTH) -> SpanSite:
    """The SpanSite of one side of a workload's sidecar (`workload`: its name for metrics,
    proto.observations.workload_name_of; `mesh_id`: Istio's default, the trust domain)."""
    canonical = canonical_service_of(labels, workload)
    tags = {
        "node_id": node_id,
        "component": "proxy",
        "istio.canonical_service": canonical,
        "istio.canonical_revision": canonical_revision_of(labels),
        "istio.mesh_id": mesh_id or "unknown",
        "istio.namespace": namespace or "default",
    }
    zone = locality.split("/")[1] if locality.count("/") >= 1 else ""
    if zone:
        tags["zone"] = zone
    local = _endpoint(address, None, f"{canonical}.{namespace}")
    name = f"{service}.{namespace}.{domain_suffix}:{service_port}/*"
    return SpanSite(kind, local, name, tags, max_tag)


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit]


def _outbound_name(head: RequestHead, upstream: Target | None) -> str:
    """Istio's decorator for an outbound route: `<host>:<port>/*` of the cluster (outbound|port|subset|host),
    else of the request's own host (passthrough)."""
    if upstream is not None and upstream.cluster.startswith("outbound|"):
        _, port, _, host = upstream.cluster.split("|", 3)
        return f"{host}:{port}/*"
    return f"{head.host}:{head.port}/*"


def build_span(site: SpanSite, policy: SidePolicy, ctx: SpanContext, timestamp: int, duration: int,
               head: RequestHead, upstream: Target | None, status: int, flag: str, bytes_sent: int) -> Span:
    """The finished span (`timestamp` unix microseconds, `duration` microseconds)."""
    limit = site.max_tag
    tags = dict(site.tags)
    request_id = head.header(b"x-request-id")
    if request_id is not None:
        tags["guid:x-request-id"] = _cut(request_id.decode("latin-1"), limit)
    authority = head.header(b"host")
    host = authority.decode("latin-1") if authority is not None else (
        head.host if head.port == 80 else f"{head.host}:{head.port}")
    tags["http.url"] = _cut(f"http://{host}{head.path}", limit)
    tags["http.method"] = head.method
    tags["http.protocol"] = "HTTP/1.1"
    tags["downstream_cluster"] = "-"
    agent = head.header(b"user-agent")
    tags["user_agent"] = _cut(agent.decode("latin-1"), limit) if agent else "-"
    if head.client:
        tags["peer.address"] = head.client
    if upstream is not None:
        tags["upstream_cluster"] = tags["upstream_cluster.name"] = _cut(upstream.cluster, limit)
        tags["upstream_address"] = f"{upstream.address}:{upstream.port}"
    tags["http.status_code"] = str(status)
    tags["response_flags"] = flag
    tags["response_size"] = str(bytes_sent)
    if status == 0 or status >= 500:
        tags["error"] = "true"
    for tag, value in policy.custom_tags.items():
        tags[tag] = _cut(value, limit)
    for tag, name in policy.header_tags.items():
        value = head.header(name.encode("latin-1"))
        if value:
            tags[tag] = _cut(value.decode("latin-1"), limit)
        elif tag in policy.header_defaults:  # Envoy's RequestHeaderCustomTag: default_value when absent
            tags[tag] = _cut(policy.header_defaults[tag], limit)
    if site.kind == CLIENT:
        name = _outbound_name(head, upstream)
        remote = _endpoint(upstream.address, upstream.port) if upstream is not None else None
    else:
        name = site.name
        remote = _endpoint(head.client) if head.client else None
    return Span(trace_id=ctx.trace_id, id=ctx.span_id, parent_id=ctx.parent_id, name=_cut(name, limit),
                kind=site.kind, timestamp=timestamp, duration=duration, local_endpoint=site.local,
                remote_endpoint=remote, tags=tags, debug=True if ctx.debug else None)

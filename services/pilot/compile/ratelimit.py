"""RateLimit (isthmus.io) -> RateLimitRule on the ClusterConfig of each service with a workload it selects.

A RateLimit selects registered workloads of its own namespace by labels (no selector: all of them). Its
rule rides on the selected workloads' service cluster, with the selector, so each sidecar of that service
enforces the rules whose selector its own labels satisfy, on its inbound listener. Riding on the cluster
reuses the cluster's push and diff: a RateLimit change is one push of the clusters it touches.
"""

from __future__ import annotations

import msgspec

from proto import xds
from proto.ratelimit import RateLimitSpec
from proto.xds import ClusterConfig, RateLimitRule
from services.pilot.compile.endpoints import selects
from runtime.hostnames import service_host
from services.pilot.compile.routes import IGNORED_HEADER_KEYS, _string_match
from services.pilot.compile.state import MeshState
from services.pilot.validate.durations import to_ms


def _rule(name: str, spec: RateLimitSpec) -> RateLimitRule:
    bucket = spec.token_bucket
    matches = [xds.RouteMatch(uri=_string_match(m.uri), method=_string_match(m.method),
                              headers={k.lower(): xds.StringMatch(exact=v.exact, prefix=v.prefix, regex=v.regex)
                                       for k, v in m.headers.items() if k.lower() not in IGNORED_HEADER_KEYS})
               for m in spec.match]
    return RateLimitRule(name=name, selector=dict(spec.selector.match_labels) if spec.selector else {},
                         matches=matches, max_tokens=bucket.max_tokens, tokens_per_fill=bucket.tokens_per_fill or 1,
                         fill_interval_ms=to_ms(bucket.fill_interval))


def attach_ratelimits(state: MeshState, clusters: dict[str, ClusterConfig]) -> dict[str, ClusterConfig]:
    """`clusters` with each RateLimit on the clusters of the services whose workloads it selects."""
    rules: dict[str, list[RateLimitRule]] = {}
    revisions: dict[str, int] = {}
    for stored in state.of_kind("RateLimit"):
        spec: RateLimitSpec = stored.resource.spec
        namespace = stored.resource.metadata.namespace
        selector = dict(spec.selector.match_labels) if spec.selector else {}
        hosts = sorted({service_host(w.service, w.namespace, state.domain_suffix)
                        for w, _ in state.workloads.values()
                        if w.namespace == namespace and selects(selector, w.labels)})
        rule = _rule(stored.source, spec)
        for host in hosts:
            if host in clusters:
                rules.setdefault(host, []).append(rule)
                revisions[host] = max(revisions.get(host, 0), stored.revision)
    for host, found in rules.items():
        cluster = clusters[host]
        clusters[host] = msgspec.structs.replace(cluster, ratelimits=found,
                                                 version=max(cluster.version, revisions[host]))
    return clusters

"""Cluster generator: one ClusterConfig per service host (Istio's CDS + EDS for one service).

A cluster exists for every host that has a service (registered workloads, ServiceEntry), that a
DestinationRule names, or that a VirtualService routes to, so a route never waits on a cluster that
would only ever be empty (the proxy then answers 503 "no healthy upstream", as Envoy does).
The DestinationRule for a host is the oldest one whose `host`, resolved in its own namespace, is that
host; it sets the cluster's load balancer (default ROUND_ROBIN) and its subsets.
"""

from __future__ import annotations

from proto.networking import TrafficPolicy
from proto.xds import ClusterConfig, Endpoint, SubsetPolicy
from services.pilot.compile.endpoints import Service
from services.pilot.compile.hosts import fqdn
from services.pilot.compile.state import MeshState, Stored

DEFAULT_LB = "ROUND_ROBIN"


def destination_rules(state: MeshState) -> dict[str, Stored]:
    """host -> the DestinationRule that governs it (the oldest claimant)."""
    rules: dict[str, Stored] = {}
    for stored in state.of_kind("DestinationRule"):
        dr = stored.resource
        rules.setdefault(fqdn(dr.spec.host, dr.metadata.namespace, state.domain_suffix), stored)
    return rules


def _lb(policy: TrafficPolicy | None) -> str | None:
    if policy is None or policy.load_balancer is None:
        return None
    return policy.load_balancer.simple


def _endpoint_key(ep: Endpoint) -> tuple:
    return (ep.address, sorted(ep.ports.items()), ep.workload)


def build_clusters(state: MeshState, services: dict[str, Service],
                   referenced: dict[str, int] | None = None) -> dict[str, ClusterConfig]:
    """`referenced`: hosts that routes send to, with the revision of the route that names them."""
    rules = destination_rules(state)
    referenced = referenced or {}
    clusters: dict[str, ClusterConfig] = {}
    for host in sorted(set(services) | set(rules) | set(referenced)):
        svc = services.get(host)
        rule = rules.get(host)
        version = max(svc.revision if svc else 0, rule.revision if rule else 0, referenced.get(host, 0))
        lb, subsets, source = DEFAULT_LB, [], ""
        if rule is not None:
            spec = rule.resource.spec
            lb = _lb(spec.traffic_policy) or DEFAULT_LB
            subsets = [SubsetPolicy(name=s.name, labels=dict(s.labels), lb=_lb(s.traffic_policy))
                       for s in spec.subsets]
            source = rule.source
        clusters[host] = ClusterConfig(
            host=host,
            version=version,
            ports=sorted(svc.ports) if svc else [],
            lb=lb,
            subsets=subsets,
            endpoints=sorted(svc.endpoints, key=_endpoint_key) if svc else [],
            source=source,
        )
    return clusters

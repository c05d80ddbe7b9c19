"""The concrete stage of the outbound pipeline: from a rule (or a bare service) to one backend -- a
destination picked by weight, its cluster, subset and service port. Linkerd's "concrete" target.
Mirrors are chosen per rule by proxy/outbound/mirror.py and sent by proxy/http/mirroring.py.

Raises NoCluster (a destination with no cluster) and NoRoute (no service, or a port it does not expose).
"""

from __future__ import annotations

from proxy.core.errors import HOST_SHOWN, NoCluster, NoRoute
from proxy.core.request import RequestHead
from proxy.outbound.policy import DEFAULT_POLICY
from proxy.outbound.route import CompiledRoute, CompiledRule
from proxy.outbound.table import ClusterEntry, RoutingTable

# (the cluster entry, its FQDN, the subset name or "", the service port, the RoutePolicy in force)
Backend = tuple[ClusterEntry, str, str, int, object]


def destination(table: RoutingTable, route: CompiledRoute, rule: CompiledRule, port: int) -> Backend:
    """One of the rule's destinations, by weight; `port` is the one the request was sent to."""
    dest = rule.pick()
    policy = rule.policy if rule.policies is None else rule.policy_for(dest)
    host, subset = dest.host, dest.subset or ""
    entry = table.clusters.get(host)
    if entry is None:
        raise NoCluster(f"route for {route.host} sends to {host}, which has no cluster")
    if dest.port is not None:
        port = dest.port
    elif len(entry.ports) == 1:  # Istio: a single-port service needs no port in the destination
        (port,) = entry.ports
    return checked(entry, host, subset, port, policy)


def service(table: RoutingTable, host: str, head: RequestHead) -> Backend:
    """A host with no http route: its own cluster, the whole of it, with the default policy."""
    entry = table.clusters.get(host)
    if entry is None:
        raise NoRoute(f"no http route and no service for host {head.host[:HOST_SHOWN]!r}")
    return checked(entry, host, "", head.port, DEFAULT_POLICY)


def checked(entry: ClusterEntry, host: str, subset: str, port: int, policy: object) -> Backend:
    if entry.ports and port not in entry.ports:
        raise NoRoute(f"service {host} does not expose port {port} (ports: {sorted(entry.ports)})")
    return entry, host, subset, port, policy

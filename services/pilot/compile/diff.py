"""compile_mesh: state -> (clusters, routes); compile_with_gateways: also the gateways' listeners;
compile_security: state -> per-workload security;
diff / diff_security: what changed between two compilations.

Comparison is by content, ignoring `version`, so a change that does not alter a resource (a new
revision of an unrelated input) produces no push for it. Passing the previous compilation to
compile_mesh keeps each unchanged resource's old object and version, and gives a changed resource a
version above its old one even when the input that changed was deleted (its revision is gone).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from proto.gateway_xds import GatewayListeners
from proto.xds import ClusterConfig, RouteConfig, TcpRule, WorkloadSecurity
from services.pilot.compile.authz import Authz
from services.pilot.compile.clusters import build_clusters
from services.pilot.compile.endpoints import collect_services
from services.pilot.compile.gateway import build_gateways
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.ratelimit import attach_ratelimits
from services.pilot.compile.routes import build_routes, mark_undefined, referenced_hosts
from services.pilot.compile.security import build_security
from services.pilot.compile.state import MeshState

T = TypeVar("T", ClusterConfig, RouteConfig, WorkloadSecurity, GatewayListeners)


Compiled = ClusterConfig | RouteConfig | WorkloadSecurity | GatewayListeners


def same_content(a: Compiled, b: Compiled) -> bool:
    return msgspec.structs.replace(a, version=0) == msgspec.structs.replace(b, version=0)


def keep_versions(old: dict[str, T], new: dict[str, T], revision: int = 0) -> dict[str, T]:
    kept: dict[str, T] = {}
    for host, item in new.items():
        prev = old.get(host)
        if prev is None:
            kept[host] = item
        elif same_content(prev, item):
            kept[host] = prev
        elif item.version > prev.version:
            kept[host] = item
        else:  # the newest input was deleted: the deletion is newer than anything left
            kept[host] = msgspec.structs.replace(item, version=max(revision, prev.version + 1))
    return kept


def compile_mesh(
    state: MeshState,
    previous: tuple[dict[str, ClusterConfig], dict[str, RouteConfig]] | None = None,
    peers: PeerAuthn | None = None,
) -> tuple[dict[str, ClusterConfig], dict[str, RouteConfig]]:
    """`peers`: the state's PeerAuthentications, indexed once for this compile (built here when None)."""
    clusters, routes, _ = compile_with_gateways(state, (*previous, {}) if previous is not None else None, peers)
    return clusters, routes


def compile_with_gateways(
    state: MeshState,
    previous: tuple[dict[str, ClusterConfig], dict[str, RouteConfig], dict[str, GatewayListeners]] | None = None,
    peers: PeerAuthn | None = None,
) -> tuple[dict[str, ClusterConfig], dict[str, RouteConfig], dict[str, GatewayListeners]]:
    """compile_mesh plus the gateway workloads' listeners (keyed by workload id); the hosts gateways route to
    get clusters as the sidecars' destinations do."""
    routes = build_routes(state)
    gateways = build_gateways(state)
    referenced = referenced_hosts(routes)
    for hosts in (referenced_hosts(gateway_routes(g)) for g in gateways.values()):
        for host, version in hosts.items():
            referenced[host] = max(referenced.get(host, 0), version)
    services = collect_services(state, peers)
    clusters = attach_ratelimits(state, build_clusters(state, services, referenced))
    routes = mark_undefined(routes, clusters)  # a subset no DestinationRule defines: the proxy need not wait
    gateways = {wid: mark_gateway_undefined(g, clusters) for wid, g in gateways.items()}
    if previous is not None:
        clusters = keep_versions(previous[0], clusters, state.revision)
        routes = keep_versions(previous[1], routes, state.revision)
        gateways = keep_versions(previous[2], gateways, state.revision)
    return clusters, routes, gateways


def diff_gateways(old: dict[str, GatewayListeners], new: dict[str, GatewayListeners]
                  ) -> tuple[list[GatewayListeners], list[str]]:
    """(changed entries, removed gateway workload ids), sorted by id."""
    return _changed(old, new)


def gateway_routes(g: GatewayListeners) -> dict[str, RouteConfig]:
    """Every route a gateway holds, as one RouteConfig per (port, domain) (tls and tcp rules as tcp)."""
    out: dict[str, RouteConfig] = {}
    for port in g.ports:
        for vh in port.virtual_hosts:
            out[f"{port.port}/{vh.route.host}"] = vh.route
        tcp = [*port.tcp_routes, *(TcpRule(destinations=t.destinations) for t in port.tls_routes)]
        if tcp:
            out[f"{port.port}/"] = RouteConfig(host="", version=g.version, tcp=tcp)
    return out


def mark_gateway_undefined(g: GatewayListeners, clusters: dict[str, ClusterConfig]) -> GatewayListeners:
    """The gateway's routes with undefined destinations marked (as mark_undefined for sidecars)."""
    ports = []
    for port in g.ports:
        marked = mark_undefined({vh.route.host: vh.route for vh in port.virtual_hosts}, clusters)
        vhosts = [msgspec.structs.replace(vh, route=marked[vh.route.host]) for vh in port.virtual_hosts]
        tcp = mark_undefined({"": RouteConfig(host="", version=0, tcp=port.tcp_routes)}, clusters)[""].tcp
        tls_as_tcp = mark_undefined({"": RouteConfig(host="", version=0, tcp=[
            TcpRule(destinations=t.destinations) for t in port.tls_routes])}, clusters)[""].tcp
        tls = [msgspec.structs.replace(t, destinations=r.destinations) for t, r in zip(port.tls_routes, tls_as_tcp)]
        ports.append(msgspec.structs.replace(port, virtual_hosts=vhosts, tcp_routes=tcp, tls_routes=tls))
    return msgspec.structs.replace(g, ports=ports)


def compile_security(state: MeshState, previous: dict[str, WorkloadSecurity] | None = None,
                     peers: PeerAuthn | None = None, authz: Authz | None = None) -> dict[str, WorkloadSecurity]:
    """Workload id -> its WorkloadSecurity (none when no policy applies), unchanged entries keeping their old
    object and version. `authz`: built here (without a JWKS resolver) when None."""
    return build_security(state, peers, previous, authz)


def diff_security(old: dict[str, WorkloadSecurity], new: dict[str, WorkloadSecurity]
                  ) -> tuple[list[WorkloadSecurity], list[str]]:
    """(changed entries, removed workload ids), sorted by id."""
    return _changed(old, new)


def _changed(old: dict[str, T], new: dict[str, T]) -> tuple[list[T], list[str]]:
    changed = [new[h] for h in sorted(new) if h not in old or (old[h] is not new[h] and not same_content(old[h], new[h]))]
    removed = sorted(h for h in old if h not in new)
    return changed, removed


def diff(
    old_clusters: dict[str, ClusterConfig], old_routes: dict[str, RouteConfig],
    new_clusters: dict[str, ClusterConfig], new_routes: dict[str, RouteConfig],
) -> tuple[list[ClusterConfig], list[RouteConfig], list[str], list[str]]:
    """(changed clusters, changed routes, removed cluster hosts, removed route hosts), sorted by host."""
    changed_clusters, removed_clusters = _changed(old_clusters, new_clusters)
    changed_routes, removed_routes = _changed(old_routes, new_routes)
    return changed_clusters, changed_routes, removed_clusters, removed_routes

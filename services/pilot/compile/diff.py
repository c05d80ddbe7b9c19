"""compile_mesh: state -> (clusters, routes); compile_security: state -> per-workload security;
diff / diff_security: what changed between two compilations.

Comparison is by content, ignoring `version`, so a change that does not alter a resource (a new
revision of an unrelated input) produces no push for it. Passing the previous compilation to
compile_mesh keeps each unchanged resource's old object and version, and gives a changed resource a
version above its old one even when the input that changed was deleted (its revision is gone).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from proto.xds import ClusterConfig, RouteConfig, WorkloadSecurity
from services.pilot.compile.authz import Authz
from services.pilot.compile.clusters import build_clusters
from services.pilot.compile.endpoints import collect_services
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.ratelimit import attach_ratelimits
from services.pilot.compile.routes import build_routes, mark_undefined, referenced_hosts
from services.pilot.compile.security import build_security
from services.pilot.compile.state import MeshState

T = TypeVar("T", ClusterConfig, RouteConfig, WorkloadSecurity)


def same_content(a: ClusterConfig | RouteConfig | WorkloadSecurity, b: ClusterConfig | RouteConfig | WorkloadSecurity
                 ) -> bool:
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
    routes = build_routes(state)
    services = collect_services(state, peers)
    clusters = attach_ratelimits(state, build_clusters(state, services, referenced_hosts(routes)))
    routes = mark_undefined(routes, clusters)  # a subset no DestinationRule defines: the proxy need not wait
    if previous is not None:
        clusters = keep_versions(previous[0], clusters, state.revision)
        routes = keep_versions(previous[1], routes, state.revision)
    return clusters, routes


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

"""The outbound router: logical (which host) -> concrete (which cluster and subset) -> endpoint.

    RoutingTable   immutable snapshot built by ConfigState after every applied push
    MeshRouter     the Router protocol over the current table: pick(head) -> Target

Host resolution follows what a client in the proxy's namespace means by a name, the way Kubernetes DNS
search paths resolve it: `reviews` -> reviews.<proxy ns>.<suffix>, `reviews.other` ->
reviews.other.<suffix>, `reviews.other.svc` -> reviews.other.svc.<suffix minus "svc.">; a name the
table holds exactly (an FQDN, a ServiceEntry host, an IP) is taken as is first.
Healthy endpoints per subset and their balancers are computed when the table is built, never per request.
"""

from __future__ import annotations

from typing import Protocol

from proto.xds import ClusterConfig, Endpoint
from proxy.errors import NoHealthyUpstream, NoRoute
from proxy.outbound.balancer import Balancer, make_balancer
from proxy.outbound.route_match import CompiledRoute, path_without_query
from proxy.outbound.target import RequestHead, Target

RESOLVE_CACHE_SIZE = 4096


class Pool:
    """The healthy endpoints of one subset ("" for the whole cluster) and their balancer."""

    __slots__ = ("host", "subset", "endpoints", "balancer", "_names")

    def __init__(self, host: str, subset: str, endpoints: list[Endpoint], lb: str) -> None:
        self.host = host
        self.subset = subset
        self.endpoints = tuple(endpoints)
        self.balancer: Balancer | None = make_balancer(lb, self.endpoints) if self.endpoints else None
        self._names: dict[int, str] = {}

    def cluster_name(self, port: int) -> str:
        name = self._names.get(port)
        if name is None:
            name = self._names[port] = f"outbound|{port}|{self.subset}|{self.host}"
        return name


class ClusterEntry:
    __slots__ = ("config", "ports", "pools")

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.ports = frozenset(config.ports)  # empty: the service accepts any port (e.g. a port-less entry)
        healthy = [ep for ep in config.endpoints if ep.healthy]
        self.pools = {"": Pool(config.host, "", healthy, config.lb)}
        for subset in config.subsets:
            members = [ep for ep in healthy if all(ep.labels.get(k) == v for k, v in subset.labels.items())]
            self.pools[subset.name] = Pool(config.host, subset.name, members, subset.lb or config.lb)


class RoutingTable:
    __slots__ = ("clusters", "routes")

    def __init__(self, clusters: dict[str, ClusterEntry], routes: dict[str, CompiledRoute]) -> None:
        self.clusters = clusters
        self.routes = routes


def build_table(clusters: dict[str, ClusterConfig], routes: dict[str, CompiledRoute],
                previous: RoutingTable | None = None) -> RoutingTable:
    """A new table; a cluster whose config object did not change keeps its entry (and balancer state)."""
    entries: dict[str, ClusterEntry] = {}
    for host, config in clusters.items():
        old = previous.clusters.get(host) if previous is not None else None
        entries[host] = old if old is not None and old.config is config else ClusterEntry(config)
    return RoutingTable(entries, dict(routes))


class TableSource(Protocol):
    """Anything holding the current table in a `table` attribute (ConfigState)."""

    table: RoutingTable


class MeshRouter:
    """Router over `source.table`, read once per request: a push swaps the table in one assignment."""

    def __init__(self, source: TableSource, namespace: str = "default",
                 domain_suffix: str = "svc.cluster.local") -> None:
        self.source = source
        self.namespace = namespace
        self.domain_suffix = domain_suffix
        tail = domain_suffix.split(".", 1)
        self._search = (domain_suffix, tail[1]) if len(tail) == 2 else (domain_suffix,)
        self._cache: dict[str, str] = {}
        self._cache_table: RoutingTable | None = None

    def resolve(self, table: RoutingTable, host: str) -> str:
        """The FQDN the table knows `host` by, or "" when it knows none."""
        if self._cache_table is not table:
            self._cache, self._cache_table = {}, table
        found = self._cache.get(host)
        if found is None:
            found = self._lookup(table, host)
            if len(self._cache) >= RESOLVE_CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = found
        return found

    def _lookup(self, table: RoutingTable, host: str) -> str:
        name = host.lower().rstrip(".")
        if "." in name or ":" in name:
            candidates = [name] + [f"{name}.{tail}" for tail in self._search]
        else:
            candidates = [f"{name}.{self.namespace}.{self.domain_suffix}", name]
        for candidate in candidates:
            if candidate in table.routes or candidate in table.clusters:
                return candidate
        return ""

    def pick(self, head: RequestHead) -> Target:
        table = self.source.table
        host = self.resolve(table, head.host)
        if not host:
            raise NoRoute(f"no service or route for host {head.host!r}")
        port = head.port
        subset = ""
        route = table.routes.get(host)
        if route is not None:
            rule = route.rule_for(head, path_without_query(head.path))
            if rule is None:
                raise NoRoute(f"no rule of the VirtualService {route.source} for {host} matches "
                              f"{head.method} {head.path}")
            dest = rule.pick()
            host, subset = dest.host, dest.subset or ""
            entry = table.clusters.get(host)
            if entry is None:
                raise NoRoute(f"route for {route.host} sends to {host}, which has no cluster")
            if dest.port is not None:
                port = dest.port
            elif len(entry.ports) == 1:  # Istio: a single-port service needs no port in the destination
                (port,) = entry.ports
        else:
            entry = table.clusters[host]
        if entry.ports and port not in entry.ports:
            raise NoRoute(f"service {host} does not expose port {port} (ports: {sorted(entry.ports)})")
        pool = entry.pools.get(subset)
        if pool is None:
            raise NoHealthyUpstream(f"cluster outbound|{port}|{subset}|{host}: subset {subset!r} is not defined")
        if pool.balancer is None:
            raise NoHealthyUpstream(f"no healthy endpoint in cluster {pool.cluster_name(port)}")
        endpoint = pool.balancer.pick()
        return Target(endpoint.address, endpoint.ports.get(port, port), pool.cluster_name(port))

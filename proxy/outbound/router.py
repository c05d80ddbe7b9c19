"""The outbound router: logical (which host) -> concrete (which cluster and subset) -> endpoint.

    RoutingTable   immutable snapshot built by ConfigState after every applied push
    MeshRouter     the Router protocol over the current table: pick(head) -> Target

Host resolution follows what a client in the proxy's namespace means by a name, the way Kubernetes DNS
search paths resolve it: `reviews` -> reviews.<proxy ns>.<suffix>, `reviews.other` ->
reviews.other.<suffix>, `reviews.other.svc` -> reviews.other.svc.<suffix minus "svc.">; a name the
table holds exactly (an FQDN, a ServiceEntry host, an IP) is taken as is first.
Healthy endpoints per subset are computed when the table is built; each balancer on the first request
that needs it (it depends on the port's policy and this proxy's locality), never again per request.
"""

from __future__ import annotations

from typing import Protocol

from proto.xds import ALLOW_ANY, ClusterConfig, Endpoint, LbPolicy, OutlierPolicy, PoolLimits
from proxy.errors import NoCluster, NoHealthyUpstream, NoRoute
from proxy.outbound.balancer import Balancer, make_balancer
from proxy.outbound.circuit_breaker import Breaker
from proxy.outbound.connect_policy import check_opaque
from proxy.outbound.locality import preferred, ranked
from proxy.outbound.outlier import Detector
from proxy.outbound.passthrough import outside
from proxy.outbound.policy import DEFAULT_POLICY
from proxy.outbound.route_match import Caller, CompiledRoute, path_without_query
from proxy.outbound.target import RequestHead, Target

RESOLVE_CACHE_SIZE = 4096
RETRY_HOST_ATTEMPTS = 5  # Istio: host_selection_retry_max_attempts


class Pool:
    """The healthy endpoints of one subset ("" for the whole cluster) and their balancers.

    Balancers are made on first use, one per load-balancing policy in force (the pool's own, or a
    portLevelSettings one) and per caller locality, and live as long as the table keeps this cluster.
    """

    __slots__ = ("host", "subset", "endpoints", "policy", "port_policies", "_balancers", "_levels", "_names",
                 "limits", "port_limits", "limited", "breakers", "outlier")

    def __init__(self, host: str, subset: str, endpoints: list[Endpoint], policy: LbPolicy | str,
                 port_policies: dict[int, LbPolicy] | None = None, limits: PoolLimits | None = None,
                 port_limits: dict[int, PoolLimits] | None = None, outlier: OutlierPolicy | None = None) -> None:
        self.host = host
        self.subset = subset
        self.endpoints = tuple(endpoints)
        self.policy = LbPolicy(lb=policy) if isinstance(policy, str) else policy
        self.port_policies = port_policies or {}
        self._balancers: dict[tuple[int, str], Balancer | None] = {}
        self._levels: dict[tuple[int, str], list[Balancer]] = {}  # retryRemoteLocalities: one per priority
        self._names: dict[int, str] = {}
        # connectionPool: one circuit breaker per cluster (service port), made on first use
        self.limits = limits
        self.port_limits = port_limits or {}
        self.limited = limits is not None or bool(self.port_limits)
        self.breakers: dict[int, Breaker | None] = {}
        # outlierDetection: ejected endpoints leave the balancers, which are rebuilt on the next pick
        self.outlier = Detector(outlier, self.endpoints, self._forget_balancers) if outlier is not None else None

    def _forget_balancers(self) -> None:
        self._balancers.clear()
        self._levels.clear()

    def breaker_for(self, port: int) -> Breaker | None:
        try:
            return self.breakers[port]
        except KeyError:
            pass
        limits = self.port_limits.get(port, self.limits)
        breaker = self.breakers[port] = Breaker(self.cluster_name(port), limits) if limits is not None else None
        return breaker

    @property
    def balancer(self) -> Balancer | None:
        """The balancer for ports without their own policy, for a caller with no locality."""
        return self.balancer_for(0, "")

    def balancer_for(self, port: int, locality: str) -> Balancer | None:
        """None when the pool has no endpoint to offer."""
        key = (port if port in self.port_policies else 0, locality)
        try:
            return self._balancers[key]
        except KeyError:
            pass
        policy = self.port_policies.get(key[0], self.policy)
        endpoints = self.endpoints if self.outlier is None else self.outlier.usable(self.endpoints)
        members = preferred(endpoints, locality, policy.locality)
        balancer = make_balancer(policy.lb, members, policy.hash) if members or policy.lb == "PASSTHROUGH" else None
        self._balancers[key] = balancer
        return balancer

    def level_balancer(self, port: int, locality: str, attempt: int) -> Balancer | None:
        """For retry `attempt` with retryRemoteLocalities: Envoy's previous_priorities as Istio sets it
        (update frequency 2): every two tries the priorities tried so far are left out, so the second
        retry goes to the next locality priority that has endpoints; past the last one, back to the first."""
        port_key = port if port in self.port_policies else 0
        policy = self.port_policies.get(port_key, self.policy)
        if policy.locality is None or not locality:
            return self.balancer_for(port, locality)
        levels = self._levels.get((port_key, locality))
        if levels is None:  # one balancer per priority present, made once (until outliers change)
            endpoints = self.endpoints if self.outlier is None else self.outlier.usable(self.endpoints)
            levels = self._levels[(port_key, locality)] = [make_balancer(policy.lb, members, policy.hash)
                                                           for members in ranked(endpoints, locality, policy.locality)]
        return levels[(attempt // 2) % len(levels)] if levels else None

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
        base = LbPolicy(lb=config.lb, hash=config.hash, locality=config.locality)
        self.pools = {"": Pool(config.host, "", healthy, base, config.port_lb, config.limits, config.port_limits,
                               config.outlier)}
        for subset in config.subsets:
            members = [ep for ep in healthy if all(ep.labels.get(k) == v for k, v in subset.labels.items())]
            if subset.lb is None:  # no policy of its own: the cluster's, port-level settings included
                policy, ports = base, config.port_lb
                limits, port_limits, outlier = config.limits, config.port_limits, config.outlier
            else:
                policy, ports = LbPolicy(lb=subset.lb, hash=subset.hash, locality=subset.locality), subset.port_lb
                limits, port_limits, outlier = subset.limits, subset.port_limits, subset.outlier
            self.pools[subset.name] = Pool(config.host, subset.name, members, policy, ports, limits, port_limits,
                                           outlier)


    def inherit(self, old: ClusterEntry) -> None:
        """Keep the runtime state of `old` (an earlier config of this cluster) that still applies: circuit
        breakers whose limits did not change (their counts of requests in flight) and outlier state."""
        for name, pool in self.pools.items():
            prev = old.pools.get(name)
            if prev is None:
                continue
            for port, breaker in prev.breakers.items():
                if breaker is not None and pool.port_limits.get(port, pool.limits) == \
                        prev.port_limits.get(port, prev.limits):
                    pool.breakers[port] = breaker
            if pool.outlier is not None and prev.outlier is not None:
                pool.outlier.inherit(prev.outlier)


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
        if old is not None and old.config is config:
            entries[host] = old
        else:
            entries[host] = entry = ClusterEntry(config)
            if old is not None:
                entry.inherit(old)
    return RoutingTable(entries, dict(routes))


class TableSource(Protocol):
    """Anything holding the current table in a `table` attribute (ConfigState)."""

    table: RoutingTable


class MeshRouter:
    """Router over `source.table`, read once per request: a push swaps the table in one assignment."""

    def __init__(self, source: TableSource, namespace: str = "default",
                 domain_suffix: str = "svc.cluster.local", labels: dict[str, str] | None = None,
                 locality: str = "") -> None:
        self.source = source
        self.namespace = namespace
        self.labels = dict(labels or {})  # this workload's labels: VirtualService match sourceLabels
        self.locality = locality  # this workload's "region/zone/subzone": localityLbSetting
        self.caller = Caller(self.labels, namespace)
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
        if not host:  # outside the mesh: outboundTrafficPolicy (proxy/outbound/passthrough.py)
            return outside(self.outbound_policy(), head.host, head.port)
        port = head.port
        subset = ""
        route = table.routes.get(host)
        if route is not None and (route.rules or not route.tcp):  # tcp routes alone leave HTTP to the cluster
            rule = route.rule_for(head, path_without_query(head.path), self.caller)
            if rule is None:
                raise NoRoute(f"no rule of the VirtualService {route.source} for {host} matches "
                              f"{head.method} {head.path}")
            if rule.local is not None:  # directResponse or redirect: the exchange answers, no endpoint
                return rule.local
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
        else:
            entry = table.clusters.get(host)
            if entry is None:
                raise NoRoute(f"no http route and no service for host {head.host!r}")
            policy = DEFAULT_POLICY
        if entry.ports and port not in entry.ports:
            raise NoRoute(f"service {host} does not expose port {port} (ports: {sorted(entry.ports)})")
        return self._target(entry, host, subset, port, head, policy)

    def _target(self, entry: ClusterEntry, host: str, subset: str, port: int, head: RequestHead,
                policy: object) -> Target:
        """The endpoint the balancer of `entry`'s `subset` pool picks for `port`, as a Target."""
        pool = entry.pools.get(subset)
        if pool is None:
            raise NoCluster(f"cluster outbound|{port}|{subset}|{host} not found: no DestinationRule defines "
                            f"subset {subset!r}")
        balancer = pool.balancer_for(port, self.locality)
        if balancer is None:
            raise NoHealthyUpstream(f"no healthy endpoint in cluster {pool.cluster_name(port)}")
        endpoint = balancer.pick(head)
        return Target(endpoint.address, endpoint.ports.get(port, port), pool.cluster_name(port), endpoint, balancer,
                      policy, pool.breaker_for(port) if pool.limited else None, pool.outlier)

    def tcp_pick(self, host: str, port: int, client: str = "") -> Target:
        """Where an opaque TCP connection to `host:port` goes: the host's first tcp route that matches the
        port and this caller picks a destination by weight (no tcp route: the host's own cluster), then the
        destination pool's balancer an endpoint. Raises NoRoute, NoCluster or NoHealthyUpstream."""
        table = self.source.table
        fqdn = self.resolve(table, host)
        if not fqdn:
            raise NoRoute(f"no service or route for host {host!r}")
        subset = ""
        route = table.routes.get(fqdn)
        rule = route.tcp_rule_for(port, self.caller) if route is not None and route.tcp else None
        if rule is not None:
            dest = rule.pick()
            fqdn, subset = dest.host, dest.subset or ""
            if dest.port is not None:
                port = dest.port
        elif route is not None and route.tcp:
            raise NoRoute(f"no tcp route of the VirtualService {route.source} for {fqdn} matches port {port}")
        entry = table.clusters.get(fqdn)
        if entry is None:
            raise NoCluster(f"tcp route sends to {fqdn}, which has no cluster")
        if rule is not None and dest.port is None and len(entry.ports) == 1:
            (port,) = entry.ports
        return self._target(entry, fqdn, subset, port, RequestHead("", host, port, "", [], client), None)

    def connect_pick(self, host: str, port: int, client: str = "") -> Target:
        """Where a CONNECT tunnel to `host:port` goes. A host the registry knows: opaque TCP to it, as Istio
        treats any TCP to a service (tcp_pick: its tcp routes, balancer and connection limits), if the port is
        opaque TCP in the mesh, else ConnectRefused (proxy/outbound/connect_policy.py). Any other:
        the outboundTrafficPolicy's passthrough, or BlackHole (raised) under REGISTRY_ONLY."""
        table = self.source.table
        fqdn = self.resolve(table, host)
        if fqdn:
            check_opaque(table, fqdn, port, self.caller)  # an HTTP port: ConnectRefused (403)
            return self.tcp_pick(host, port, client)
        return outside(self.outbound_policy(), host, port, tunnel=True)

    def outbound_policy(self) -> str:
        """meshConfig.outboundTrafficPolicy.mode, from the source's mesh settings (ConfigState.mesh)."""
        mesh = getattr(self.source, "mesh", None)
        return mesh.outbound_traffic_policy if mesh is not None else ALLOW_ANY

    def mirror_pick(self, host: str, subset: str, port: int | None, head: RequestHead) -> tuple[str, int] | None:
        """(address, port) of an endpoint of a mirror destination, or None when it has none (no error:
        a mirror never fails the request). Only requests on a rule with mirrors call this."""
        entry = self.source.table.clusters.get(host)
        if entry is None:
            return None
        if port is None:
            port = next(iter(entry.ports)) if len(entry.ports) == 1 else head.port
        pool = entry.pools.get(subset)
        balancer = pool.balancer_for(port, self.locality) if pool is not None else None
        if balancer is None:
            return None
        endpoint = balancer.pick(head)
        return endpoint.address, endpoint.ports.get(port, port)

    def retry_pick(self, target: Target, head: RequestHead, tried: list[tuple[str, int]], attempt: int = 1) -> Target:
        """Another endpoint of `target`'s cluster for retry number `attempt`: one not in `tried` where the
        balancer offers one within RETRY_HOST_ATTEMPTS picks (Envoy's previous_hosts predicate, as Istio
        configures it, unless retryIgnorePreviousHosts is false); with retryRemoteLocalities, from the
        locality priority Pool.level_balancer gives."""
        balancer = target.balancer
        if balancer is None:
            return Target(target.address, target.port, target.cluster, policy=target.policy, breaker=target.breaker,
                          outlier=target.outlier)
        _, port_text, subset, host = target.cluster.split("|", 3)  # outbound|<service port>|<subset>|<host>
        port = int(port_text)
        retry = getattr(target.policy, "retry", None)
        if retry is not None and retry.remote_localities:
            entry = self.source.table.clusters.get(host)
            pool = entry.pools.get(subset) if entry is not None else None
            if pool is not None:
                balancer = pool.level_balancer(port, self.locality, attempt) or balancer
        if retry is not None and not retry.ignore_previous_hosts:
            tried = []
        for _ in range(RETRY_HOST_ATTEMPTS):
            endpoint = balancer.pick(head)  # type: ignore[attr-defined]
            address, endpoint_port = endpoint.address, endpoint.ports.get(port, port)
            if (address, endpoint_port) not in tried:
                break
        else:  # the balancer keeps offering tried endpoints (random, hash): take the first untried one
            for other in getattr(balancer, "endpoints", ()):
                if (other.address, other.ports.get(port, port)) not in tried:
                    endpoint, address, endpoint_port = other, other.address, other.ports.get(port, port)
                    break
        if head.set_cookie is not None:  # a generated hash cookie must name the endpoint that answers
            cookie_for = getattr(balancer, "cookie_for", None)
            if cookie_for is not None:
                cookie_for(head, endpoint)
        return Target(address, endpoint_port, target.cluster, endpoint, balancer, target.policy, target.breaker,
                      target.outlier)

"""The routing table: an immutable snapshot of clusters and compiled routes, built by ConfigState after
every applied push (proxy/control/config_state.py). Healthy endpoints per subset are computed here; a
cluster whose config did not change keeps its entry, so its balancer, breaker and outlier state survive.
"""

from __future__ import annotations

from typing import Protocol

from proto.xds import ClusterConfig, LbPolicy
from proxy.outbound.endpoints import Pool
from proxy.outbound.route import CompiledRoute
from proxy.outbound.upstream_tls import Originate


class ClusterEntry:
    __slots__ = ("config", "ports", "pools")

    def __init__(self, config: ClusterConfig, originate: Originate | None = None) -> None:
        self.config = config
        self.ports = frozenset(config.ports)  # empty: the service accepts any port (e.g. a port-less entry)
        healthy = [ep for ep in config.endpoints if ep.healthy]
        base = LbPolicy(lb=config.lb, hash=config.hash, locality=config.locality)
        self.pools = {"": Pool(config.host, "", healthy, base, config.port_lb, config.limits, config.port_limits,
                               config.outlier, config=config, originate=originate)}
        for subset in config.subsets:
            members = [ep for ep in healthy if all(ep.labels.get(k) == v for k, v in subset.labels.items())]
            if subset.lb is None:  # no policy of its own: the cluster's, port-level settings included
                policy, ports = base, config.port_lb
                limits, port_limits, outlier = config.limits, config.port_limits, config.outlier
            else:
                policy, ports = LbPolicy(lb=subset.lb, hash=subset.hash, locality=subset.locality), subset.port_lb
                limits, port_limits, outlier = subset.limits, subset.port_limits, subset.outlier
            self.pools[subset.name] = Pool(config.host, subset.name, members, policy, ports, limits, port_limits,
                                           outlier, config=config, originate=originate)


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
                previous: RoutingTable | None = None, originate: Originate | None = None) -> RoutingTable:
    """A new table; a cluster whose config object did not change keeps its entry (and balancer state, and
    the transport decided per endpoint). `originate`: the sidecar's TLS source (None: plaintext everywhere)."""
    entries: dict[str, ClusterEntry] = {}
    for host, config in clusters.items():
        old = previous.clusters.get(host) if previous is not None else None
        if old is not None and old.config is config:
            entries[host] = old
        else:
            entries[host] = entry = ClusterEntry(config, originate)
            if old is not None:
                entry.inherit(old)
    return RoutingTable(entries, dict(routes))


class TableSource(Protocol):
    """Anything holding the current table in a `table` attribute (ConfigState)."""

    table: RoutingTable

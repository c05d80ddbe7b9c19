"""What every push must pass before anything of it applies (proxy/control/config_state.py ConfigState.apply):
each cluster checked, each route compiled; any failure is a ConfigRejected, which refuses the whole push."""

from __future__ import annotations

import re

from proto.xds import ClusterConfig, RouteConfig
from proxy.outbound.upstream_tls import TlsCheck, tls_problem
from proxy.outbound.balancer import policy_problem
from proxy.outbound.route_match import CompiledMatch
from proxy.outbound.route import CompiledRoute


class ConfigRejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _check_cluster(cluster: ClusterConfig, tls_check: TlsCheck | None = None) -> None:
    where = f"cluster {cluster.host}"
    if not cluster.host:
        raise ConfigRejected("a cluster has an empty host")
    policies = [("", cluster.lb, cluster.hash)]
    policies += [(f" port {port}", p.lb, p.hash) for port, p in cluster.port_lb.items()]
    names = set()
    for subset in cluster.subsets:
        if subset.name in names or not subset.name:
            raise ConfigRejected(f"{where}: subset name {subset.name!r} is empty or repeated")
        names.add(subset.name)
        if subset.lb is not None:
            policies.append((f" subset {subset.name}", subset.lb, subset.hash))
        policies += [(f" subset {subset.name} port {port}", p.lb, p.hash) for port, p in subset.port_lb.items()]
    for at, lb, hash_policy in policies:
        problem = policy_problem(lb, hash_policy)
        if problem:
            raise ConfigRejected(f"{where}{at}: {problem}")
    limits = [cluster.limits, *cluster.port_limits.values()]
    for subset in cluster.subsets:
        limits += [subset.limits, *subset.port_limits.values()]
    if any(lim is not None and min(lim.max_connections, lim.max_pending, lim.connect_timeout_ms) < 0
           for lim in limits):
        raise ConfigRejected(f"{where}: connection pool limits must be non-negative")
    for od in [cluster.outlier, *(s.outlier for s in cluster.subsets)]:
        if od is not None and (od.interval_ms <= 0 or od.base_ejection_ms <= 0):
            raise ConfigRejected(f"{where}: outlier detection interval and base ejection time must be positive")
    for port in cluster.ports:
        if not 1 <= port <= 65535:
            raise ConfigRejected(f"{where}: port {port} is out of range")
    for ep in cluster.endpoints:
        if not ep.address:
            raise ConfigRejected(f"{where}: an endpoint has no address")
    problem = tls_problem(cluster, tls_check)
    if problem:
        raise ConfigRejected(problem)
    for rl in cluster.ratelimits:
        if rl.max_tokens < 1 or rl.tokens_per_fill < 1 or rl.fill_interval_ms < 1:
            raise ConfigRejected(f"{where}: rate limit {rl.name}: the token bucket needs positive values")
        for m in rl.matches:
            try:
                CompiledMatch(m)
            except (ValueError, re.error) as exc:
                raise ConfigRejected(f"{where}: rate limit {rl.name}: {exc}") from exc


def _compile(route: RouteConfig) -> CompiledRoute:
    try:
        return CompiledRoute(route)
    except ValueError as exc:
        raise ConfigRejected(f"route {route.host}: {exc}") from exc

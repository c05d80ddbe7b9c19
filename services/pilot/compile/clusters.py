"""Cluster generator: one ClusterConfig per service host (Istio's CDS + EDS for one service).

A cluster exists for every host that has a service (registered workloads, ServiceEntry), that a
DestinationRule names, or that a VirtualService routes to, so a route never waits on a cluster that
would only ever be empty (the proxy then answers 503 "no healthy upstream", as Envoy does).
The DestinationRule for a host is the oldest one whose `host`, resolved in its own namespace, is that
host; it sets the cluster's load balancer (default LEAST_REQUEST, as Istio's) and its subsets. Load balancing is
resolved here, level by level, as Istio merges traffic policies: the cluster carries the top-level
policy and its portLevelSettings; a subset with a trafficPolicy carries its merged policy per port; a
subset without one carries none and uses the cluster's. TLS (trafficPolicy.tls) travels per level as
written (tls.py); proto.xds.dr_tls merges it for a subset and port.
"""

from __future__ import annotations

from proto.networking import (
    ConnectionPoolSettings, ConsistentHashLB, LoadBalancerSettings, OutlierDetection, RetryBudget, Subset,
    TrafficPolicy,
)
from proto.xds import (
    ClusterConfig, Endpoint, HashPolicy, Keepalive, LbPolicy, LocalityPolicy, OutlierPolicy, PoolLimits, SubsetPolicy,
)
from proto.xds import RetryBudget as BudgetPolicy
from services.pilot.compile.endpoints import Service
from runtime.hostnames import fqdn
from services.pilot.compile.state import MeshState, Stored
from services.pilot.compile.tls import level_tls
from services.pilot.validate.durations import parse_duration, to_ms

DEFAULT_LB = "LEAST_REQUEST"  # Istio's default when a DestinationRule sets none (or UNSPECIFIED)
RING_SIZE = 1024  # Envoy's default minimum ring size
MAGLEV_SIZE = 65537  # Envoy's default maglev table size


def destination_rules(state: MeshState) -> dict[str, Stored]:
    """host -> the DestinationRule that governs it (the oldest claimant)."""
    rules: dict[str, Stored] = {}
    for stored in state.of_kind("DestinationRule"):
        dr = stored.resource
        rules.setdefault(fqdn(dr.spec.host, dr.metadata.namespace, state.domain_suffix), stored)
    return rules


def _hash(ch: ConsistentHashLB | None) -> HashPolicy | None:
    if ch is None:
        return None
    if ch.maglev is not None:
        table, size = "MAGLEV", ch.maglev.table_size or MAGLEV_SIZE
    else:
        ring = ch.ring_hash.minimum_ring_size if ch.ring_hash is not None else ch.minimum_ring_size
        table, size = "RING_HASH", ring or RING_SIZE
    cookie = ch.http_cookie
    ttl = parse_duration(cookie.ttl) / 1e9 if cookie is not None and cookie.ttl is not None else None
    return HashPolicy(header=(ch.http_header_name or "").lower(), cookie=cookie.name if cookie else "",
                      cookie_path=(cookie.path or "") if cookie else "", cookie_ttl_s=ttl,
                      query=ch.http_query_parameter_name or "", source_ip=bool(ch.use_source_ip), table=table,
                      size=size)


def _policy(settings: LoadBalancerSettings | None) -> LbPolicy:
    """One level's loadBalancer as the proxy runs it; None (not set) is the default balancer."""
    if settings is None:
        return LbPolicy(lb=DEFAULT_LB)
    hash_policy = _hash(settings.consistent_hash)
    simple = settings.simple
    if hash_policy is not None:
        lb = "CONSISTENT_HASH"
    elif simple is None or simple == "UNSPECIFIED":
        lb = DEFAULT_LB
    else:
        lb = "LEAST_REQUEST" if simple == "LEAST_CONN" else simple
    loc = settings.locality_lb_setting
    locality = None
    if loc is not None and loc.enabled is not False:
        locality = LocalityPolicy(failover={f.from_ or "": f.to or "" for f in loc.failover or []})
    return LbPolicy(lb=lb, hash=hash_policy, locality=locality)


def _budget(budget: RetryBudget | None) -> BudgetPolicy | None:
    """Istio's defaults for what a retryBudget leaves unset: 20%, at least 3, requests in flight only."""
    if budget is None:
        return None
    return BudgetPolicy(percent=budget.percent if budget.percent is not None else 20.0,
                        min_concurrency=budget.min_retry_concurrency if budget.min_retry_concurrency is not None
                        else 3, interval_ms=to_ms(budget.budget_interval))


def _limits(pool: ConnectionPoolSettings | None, budget: RetryBudget | None = None) -> PoolLimits | None:
    """connectionPool (and the level's retryBudget) as the proxy's circuit breaker runs it; None: no limits."""
    if pool is None and budget is None:
        return None
    limits = PoolLimits(retry_budget=_budget(budget))
    tcp, http = (pool.tcp, pool.http) if pool is not None else (None, None)
    if tcp is not None:
        limits.max_connections = tcp.max_connections or 0
        limits.connect_timeout_ms = to_ms(tcp.connect_timeout)
        limits.max_connection_duration_ms = to_ms(tcp.max_connection_duration)
        if tcp.idle_timeout is not None:
            limits.tcp_idle_timeout_ms = to_ms(tcp.idle_timeout)
        ka = tcp.tcp_keepalive
        if ka is not None:
            limits.keepalive = Keepalive(time_s=to_ms(ka.time) // 1000, interval_s=to_ms(ka.interval) // 1000,
                                         probes=ka.probes or 0)
    if http is not None:
        limits.max_pending = http.http1_max_pending_requests or 0
        limits.max_requests = http.http2_max_requests or 0
        limits.max_requests_per_connection = http.max_requests_per_connection or 0
        limits.max_retries = http.max_retries or 0
        limits.idle_timeout_ms = to_ms(http.idle_timeout)
    return limits


def _outlier(od: OutlierDetection | None) -> OutlierPolicy | None:
    """outlierDetection with Envoy's defaults for what Istio leaves unset; None: off."""
    if od is None:
        return None
    default = OutlierPolicy()
    return OutlierPolicy(
        consecutive_5xx=od.consecutive_5xx_errors if od.consecutive_5xx_errors is not None else default.consecutive_5xx,
        consecutive_gateway=od.consecutive_gateway_errors or 0,
        interval_ms=to_ms(od.interval, default.interval_ms),
        base_ejection_ms=to_ms(od.base_ejection_time, default.base_ejection_ms),
        max_ejection_percent=od.max_ejection_percent or default.max_ejection_percent,
        min_health_percent=od.min_health_percent or 0)


def _port_pools(policy: TrafficPolicy | None) -> dict[int, ConnectionPoolSettings]:
    """The portLevelSettings that set a connectionPool: port -> its connectionPool."""
    return {p.port.number: p.connection_pool for p in (policy.port_level_settings if policy else None) or []
            if p.port is not None and p.connection_pool is not None}


def _port_settings(policy: TrafficPolicy | None) -> dict[int, LoadBalancerSettings | None]:
    return {p.port.number: p.load_balancer for p in (policy.port_level_settings if policy else None) or []
            if p.port is not None}


def _subset(subset: Subset, top: TrafficPolicy | None) -> SubsetPolicy:
    """Istio's MergeTrafficPolicy: the top level, its port-level settings for the port, then the subset's
    loadBalancer, then the subset's port-level settings (which replace, never inherit)."""
    own = subset.traffic_policy
    if own is None:  # the cluster's policy, port-level settings included
        return SubsetPolicy(name=subset.name, labels=dict(subset.labels))
    top_lb = top.load_balancer if top else None
    top_ports, own_ports = _port_settings(top), _port_settings(own)
    base = _policy(own.load_balancer if own.load_balancer is not None else top_lb)
    port_lb: dict[int, LbPolicy] = {}
    for port in sorted(set(top_ports) | set(own_ports)):
        settings = top_ports[port] if port in top_ports else top_lb
        if own.load_balancer is not None:
            settings = own.load_balancer
        if port in own_ports:
            settings = own_ports[port]
        port_lb[port] = _policy(settings)
    # connectionPool merges the same way, in the same order
    top_pool = top.connection_pool if top else None
    pool = own.connection_pool if own.connection_pool is not None else top_pool
    budget = own.retry_budget if own.retry_budget is not None else top.retry_budget if top else None
    top_cp, own_cp = _port_pools(top), _port_pools(own)
    port_limits: dict[int, PoolLimits] = {}
    for port in sorted(set(top_cp) | set(own_cp)):
        chosen = top_cp.get(port, top_pool)
        if own.connection_pool is not None:
            chosen = own.connection_pool
        if port in own_cp:
            chosen = own_cp[port]
        limits = _limits(chosen, budget)
        if limits is not None:
            port_limits[port] = limits
    tls, port_tls = level_tls(own)  # merged per request port by proto.xds.dr_tls
    return SubsetPolicy(name=subset.name, labels=dict(subset.labels), lb=base.lb, hash=base.hash,
                        locality=base.locality, port_lb=port_lb, limits=_limits(pool, budget),
                        port_limits=port_limits,
                        outlier=_outlier(own.outlier_detection if own.outlier_detection is not None
                                         else top.outlier_detection if top else None), tls=tls, port_tls=port_tls)


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
        base, port_lb, subsets, source = LbPolicy(lb=DEFAULT_LB), {}, [], ""
        limits, port_limits, outlier = None, {}, None
        tls, port_tls = None, {}
        if rule is not None:
            spec = rule.resource.spec
            top = spec.traffic_policy
            base = _policy(top.load_balancer if top else None)
            port_lb = {port: _policy(settings) for port, settings in _port_settings(top).items()}
            subsets = [_subset(s, top) for s in spec.subsets]
            if top is not None:
                limits = _limits(top.connection_pool, top.retry_budget)
                port_limits = {port: _limits(pool, top.retry_budget) for port, pool in _port_pools(top).items()}
                outlier = _outlier(top.outlier_detection)
                tls, port_tls = level_tls(top)
            source = rule.source
        clusters[host] = ClusterConfig(
            host=host,
            version=version,
            ports=sorted(svc.ports) if svc else [],
            lb=base.lb,
            subsets=subsets,
            hash=base.hash,
            locality=base.locality,
            port_lb=port_lb,
            endpoints=sorted(svc.endpoints, key=_endpoint_key) if svc else [],
            tcp_ports=sorted(svc.tcp_ports) if svc else [],
            source=source,
            limits=limits,
            port_limits=port_limits,
            outlier=outlier,
            tls=tls,
            port_tls=port_tls,
        )
    return clusters

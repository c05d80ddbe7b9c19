"""Semantic checks of a DestinationRule (Istio's ValidateDestinationRule), for the fields Isthmus supports.

Fields Isthmus does not declare in proto/networking.py fail at decode with their path; this module checks
the values of the declared ones and appends every problem to the document's `Findings`; `tls` at every
level is checked by client_tls.py.
"""

from __future__ import annotations

from proto.networking import (
    ConnectionPoolSettings, DestinationRuleSpec, LoadBalancerSettings, OutlierDetection, RetryBudget, TrafficPolicy,
)
from services.pilot.validate.checks import HEADER_NAME, check_host, check_labels, check_port, check_subset_name
from services.pilot.validate.client_tls import client_tls
from services.pilot.validate.durations import duration_ms
from services.pilot.validate.findings import Findings

SUPPORTED_LB = ("ROUND_ROBIN", "RANDOM", "LEAST_REQUEST", "LEAST_CONN", "PASSTHROUGH", "UNSPECIFIED")
HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
MAX_RING_SIZE = 1 << 23  # Envoy's maximum ring size
MAX_MAGLEV_TABLE = 5000011  # Envoy's largest maglev table


def _load_balancer(lb: LoadBalancerSettings, path: str, f: Findings) -> None:
    simple = lb.simple
    if simple is not None and lb.consistent_hash is not None:
        f.error(path, "only one of `simple` or `consistentHash` may be set")
    if simple is not None and simple not in SUPPORTED_LB:
        f.error(f"{path}.simple", f"unknown load balancer `{simple}` (supported: {', '.join(SUPPORTED_LB)})")
    elif simple == "LEAST_CONN":
        f.warn(f"{path}.simple", "LEAST_CONN is deprecated: it is LEAST_REQUEST")
    if lb.consistent_hash is not None:
        _consistent_hash(lb, f"{path}.consistentHash", f)
    loc = lb.locality_lb_setting
    if loc is not None:
        seen: set[str] = set()
        for i, rule in enumerate(loc.failover or []):
            fpath = f"{path}.localityLbSetting.failover[{i}]"
            for end, value in (("from", rule.from_), ("to", rule.to)):
                if not value:
                    f.error(f"{fpath}.{end}", f"failover `{end}` is required")
                elif "/" in value or "*" in value:
                    f.error(f"{fpath}.{end}", "locality failover only supports region to region")
            if rule.from_ and rule.from_ == rule.to:
                f.error(fpath, "locality lb setting failover src and dst should not be the same")
            if rule.from_ in seen:
                f.error(f"{fpath}.from", f"failover from region `{rule.from_}` is defined twice")
            seen.add(rule.from_ or "")


def _consistent_hash(lb: LoadBalancerSettings, hpath: str, f: Findings) -> None:
    ch = lb.consistent_hash
    assert ch is not None
    keys = [k for k, v in zip(HASH_KEYS, (ch.http_header_name, ch.http_cookie, ch.use_source_ip or None,
                                          ch.http_query_parameter_name)) if v is not None]
    if not keys:
        f.error(hpath, f"a hash key is required: one of {', '.join(HASH_KEYS)}")
    elif len(keys) > 1:
        f.error(hpath, f"only one hash key may be set (found {', '.join(keys)})")
    if ch.http_header_name is not None and not HEADER_NAME.match(ch.http_header_name):
        f.error(f"{hpath}.httpHeaderName", f"`{ch.http_header_name}` is not a valid header name")
    if ch.http_query_parameter_name == "":
        f.error(f"{hpath}.httpQueryParameterName", "query parameter name must not be empty")
    if ch.http_cookie is not None:
        cpath = f"{hpath}.httpCookie"
        if not ch.http_cookie.name:
            f.error(f"{cpath}.name", "name required for HttpCookie")
        if ch.http_cookie.ttl is None:
            f.error(f"{cpath}.ttl", "ttl required for HttpCookie")
        else:
            duration_ms(ch.http_cookie.ttl, f"{cpath}.ttl", f, allow_zero=True)
    tables = [k for k, v in (("ringHash", ch.ring_hash), ("maglev", ch.maglev),
                             ("minimumRingSize", ch.minimum_ring_size)) if v is not None]
    if len(tables) > 1:
        f.error(hpath, f"only one of ringHash, maglev or minimumRingSize may be set (found {', '.join(tables)})")
    ring = ch.ring_hash.minimum_ring_size if ch.ring_hash is not None else ch.minimum_ring_size
    if ring is not None and not 1 <= ring <= MAX_RING_SIZE:
        f.error(f"{hpath}.{'ringHash.minimumRingSize' if ch.ring_hash else 'minimumRingSize'}",
                f"ring size {ring} is not in 1..{MAX_RING_SIZE}")
    size = ch.maglev.table_size if ch.maglev is not None else None
    if size is not None and (not 2 <= size <= MAX_MAGLEV_TABLE or not _is_prime(size)):
        f.error(f"{hpath}.maglev.tableSize", f"maglev table size {size} must be a prime number "
                                             f"no larger than {MAX_MAGLEV_TABLE}")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def _connection_pool(pool: ConnectionPoolSettings, path: str, f: Findings) -> None:
    """Istio's validateConnectionPool, for the fields Isthmus declares (the others fail at decode)."""
    if pool.tcp is None and pool.http is None:
        f.error(path, "connection pool must have at least one field")
    tcp = pool.tcp
    if tcp is not None:
        if tcp.max_connections is not None and tcp.max_connections < 0:
            f.error(f"{path}.tcp.maxConnections", "max connections must be non-negative")
        if tcp.connect_timeout is not None:
            duration_ms(tcp.connect_timeout, f"{path}.tcp.connectTimeout", f)
        if tcp.max_connection_duration is not None:
            duration_ms(tcp.max_connection_duration, f"{path}.tcp.maxConnectionDuration", f)
        if tcp.idle_timeout is not None:
            duration_ms(tcp.idle_timeout, f"{path}.tcp.idleTimeout", f, allow_zero=True)
        keepalive = tcp.tcp_keepalive
        if keepalive is not None:
            kpath = f"{path}.tcp.tcpKeepalive"
            if keepalive.probes is not None and not 0 <= keepalive.probes <= 127:
                f.error(f"{kpath}.probes", f"probes {keepalive.probes} is not in 0..127 (Linux's TCP_KEEPCNT)")
            for name, value in (("time", keepalive.time), ("interval", keepalive.interval)):
                if value is not None:
                    ms = duration_ms(value, f"{kpath}.{name}", f)
                    if ms is not None and ms % 1000:
                        f.error(f"{kpath}.{name}", f"`{value}`: keepalive durations are whole seconds")
    http = pool.http
    if http is not None:
        for name, number in (("http1MaxPendingRequests", http.http1_max_pending_requests),
                             ("http2MaxRequests", http.http2_max_requests),
                             ("maxRequestsPerConnection", http.max_requests_per_connection),
                             ("maxRetries", http.max_retries)):
            if number is not None and number < 0:
                f.error(f"{path}.http.{name}", f"{name} must be non-negative")
        if http.idle_timeout is not None:
            duration_ms(http.idle_timeout, f"{path}.http.idleTimeout", f)


def _retry_budget(budget: RetryBudget, path: str, f: Findings) -> None:
    if budget.percent is not None and not 0.0 <= budget.percent <= 100.0:
        f.error(f"{path}.percent", f"percent {budget.percent:g} is not in range 0..100")
    if budget.min_retry_concurrency is not None and budget.min_retry_concurrency < 0:
        f.error(f"{path}.minRetryConcurrency", "minRetryConcurrency must be non-negative")
    if budget.budget_interval is not None:
        duration_ms(budget.budget_interval, f"{path}.budgetInterval", f, allow_zero=True)


def _outlier_detection(od: OutlierDetection, path: str, f: Findings) -> None:
    """Istio's validateOutlierDetection: durations, and percentages in 0..100."""
    for name, value in (("interval", od.interval), ("baseEjectionTime", od.base_ejection_time)):
        if value is not None:
            duration_ms(value, f"{path}.{name}", f)
    for name, number in (("consecutive5xxErrors", od.consecutive_5xx_errors),
                         ("consecutiveGatewayErrors", od.consecutive_gateway_errors)):
        if number is not None and number < 0:
            f.error(f"{path}.{name}", f"{name} must be non-negative")
    for name, pct in (("maxEjectionPercent", od.max_ejection_percent), ("minHealthPercent", od.min_health_percent)):
        if pct is not None and not 0 <= pct <= 100:
            f.error(f"{path}.{name}", f"percentage {pct} is not in range 0..100")


def _traffic_policy(policy: TrafficPolicy | None, path: str, f: Findings, inherited_tls: bool = False) -> None:
    """`inherited_tls`: a level above sets tls (for a subset's policy: the top level)."""
    if policy is None:
        return
    if (policy.load_balancer is None and policy.connection_pool is None and policy.outlier_detection is None
            and not policy.port_level_settings and policy.retry_budget is None and policy.tls is None):
        f.error(path, "traffic policy must have at least one field")
        return
    if policy.tls is not None:
        client_tls(policy.tls, f"{path}.tls", f)
    tls_above = inherited_tls or policy.tls is not None
    if policy.retry_budget is not None:
        _retry_budget(policy.retry_budget, f"{path}.retryBudget", f)
    if policy.load_balancer is not None:
        _load_balancer(policy.load_balancer, f"{path}.loadBalancer", f)
    if policy.connection_pool is not None:
        _connection_pool(policy.connection_pool, f"{path}.connectionPool", f)
    if policy.outlier_detection is not None:
        _outlier_detection(policy.outlier_detection, f"{path}.outlierDetection", f)
    ports: set[int] = set()
    for i, port_policy in enumerate(policy.port_level_settings or []):
        ppath = f"{path}.portLevelSettings[{i}]"
        if port_policy.port is None:
            f.error(f"{ppath}.port", "portTrafficPolicy must have valid port")
        else:
            check_port(port_policy.port.number, f"{ppath}.port.number", f)
            if port_policy.port.number in ports:
                f.error(f"{ppath}.port.number", f"port {port_policy.port.number} has two port level settings")
            ports.add(port_policy.port.number)
        if port_policy.load_balancer is None and port_policy.connection_pool is None and port_policy.tls is None:
            f.error(ppath, "port traffic policy must have at least one field")
        if port_policy.load_balancer is not None:
            _load_balancer(port_policy.load_balancer, f"{ppath}.loadBalancer", f)
        if port_policy.connection_pool is not None:
            _connection_pool(port_policy.connection_pool, f"{ppath}.connectionPool", f)
        if port_policy.tls is not None:
            client_tls(port_policy.tls, f"{ppath}.tls", f)
        elif tls_above and port_policy.port is not None:
            f.warn(ppath, f"sets no tls, so the tls set above does not apply to port {port_policy.port.number}: "
                          "a port-level setting replaces its level's policy for its port, as in Istio (auto mTLS "
                          "decides there)")


def destination_rule(spec: DestinationRuleSpec, f: Findings) -> None:
    check_host(spec.host, "spec.host", f)
    _traffic_policy(spec.traffic_policy, "spec.trafficPolicy", f)
    names: set[str] = set()
    for i, subset in enumerate(spec.subsets):
        path = f"spec.subsets[{i}]"
        check_subset_name(subset.name, f"{path}.name", f)
        if subset.name in names:
            f.error(f"{path}.name", f"duplicate subset names: {subset.name}")
        names.add(subset.name)
        check_labels(subset.labels, f"{path}.labels", f)
        top_tls = spec.traffic_policy is not None and spec.traffic_policy.tls is not None
        _traffic_policy(subset.traffic_policy, f"{path}.trafficPolicy", f, inherited_tls=top_tls)

"""The endpoint stage's state: the healthy endpoints of one subset of a cluster, their balancers (one per
load-balancing policy in force and caller locality, made on first use), circuit breakers (one per service
port), outlier detector, and the transport to each endpoint (plaintext or which TLS, and the upstream pool
key: proxy/outbound/upstream_tls.py), decided once per endpoint and port. Built with the routing table
(proxy/outbound/table.py), once per push.
"""

from __future__ import annotations

from proto.xds import ClusterConfig, Endpoint, LbPolicy, OutlierPolicy, PoolLimits
from proxy.core.conn_policy import Key
from proxy.outbound.balancer import Balancer, make_balancer
from proxy.outbound.circuit_breaker import Breaker
from proxy.outbound.locality import preferred, ranked
from proxy.outbound.outlier import Detector
from proxy.outbound.upstream_tls import Originate, decide, istio_sni

Transport = tuple[Key, object]  # (the upstream pool's key, the TlsOrigination or None for plaintext)


class Pool:
    """The healthy endpoints of one subset ("" for the whole cluster) and their balancers.

    Balancers are made on first use, one per load-balancing policy in force (the pool's own, or a
    portLevelSettings one) and per caller locality, and live as long as the table keeps this cluster.
    """

    __slots__ = ("host", "subset", "endpoints", "policy", "port_policies", "_balancers", "_levels", "_names",
                 "limits", "port_limits", "limited", "breakers", "outlier", "config", "originate", "transports",
                 "_members", "_snis")

    def __init__(self, host: str, subset: str, endpoints: list[Endpoint], policy: LbPolicy | str,
                 port_policies: dict[int, LbPolicy] | None = None, limits: PoolLimits | None = None,
                 port_limits: dict[int, PoolLimits] | None = None, outlier: OutlierPolicy | None = None, *,
                 config: ClusterConfig | None = None, originate: Originate | None = None) -> None:
        """`config` (the cluster's, for its DestinationRule tls) and `originate` (the sidecar's TLS source,
        proxy/tls/upstream.py): how `transport` decides; without `originate`, every endpoint is plaintext."""
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
        # per service port: id(endpoint) -> Transport, filled on first use (endpoints live as long as the pool)
        self.config = config
        self.originate = originate
        self.transports: dict[int, dict[int, Transport]] = {}
        self._members: frozenset[int] | None = None  # id() of our endpoints, made on the first decision
        self._snis: dict[int, str] = {}  # service port -> this cluster's SNI for ISTIO_MUTUAL (istio_sni)

    def transport(self, port: int, endpoint: Endpoint) -> Transport:
        """How to reach `endpoint` for service `port`: (pool key, TLS origination or None), decided on first
        use and kept as long as the pool (one push). Raises nothing: an unusable tls was refused at apply."""
        per_port = self.transports.get(port)
        if per_port is None:
            per_port = self.transports[port] = {}
        try:
            return per_port[id(endpoint)]
        except KeyError:  # first use in this push: decided below
            pass
        address, endpoint_port = endpoint.address, endpoint.ports.get(port, port)
        tls = decide(self.config, self.subset, port, endpoint, self.originate, self.sni_name(port))
        members = self._members
        if members is None:
            members = self._members = frozenset(id(e) for e in self.endpoints)
        breaker = self.breaker_for(port) if self.limited else None
        conn_policy = breaker.conn_policy if breaker is not None else None
        key: Key = (address, endpoint_port) if conn_policy is None else conn_policy.key(address, endpoint_port)
        if tls is not None:
            key = (*key, *tls.key)  # type: ignore[attr-defined]
        found = (key, tls)
        if id(endpoint) in members:  # kept only for our own endpoints (a retry may ask about an older table's)
            per_port[id(endpoint)] = found
        return found

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

    def sni_name(self, port: int) -> str:
        """The server name ISTIO_MUTUAL sends to this cluster's `port` (istio_sni), made once per port."""
        name = self._snis.get(port)
        if name is None:
            name = self._snis[port] = istio_sni(self.host, self.subset, port)
        return name

    def cluster_name(self, port: int) -> str:
        name = self._names.get(port)
        if name is None:
            name = self._names[port] = f"outbound|{port}|{self.subset}|{self.host}"
        return name

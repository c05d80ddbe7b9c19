"""Route plans: the outbound pipeline's answer for a (host, port) whose routing does not depend on the
request, worked out once per routing table instead of once per request.

A plan exists only where the logical and concrete stages cannot answer differently for two requests to the
same (host, port): the host has no http route (its own cluster, the default policy), or one rule without
matches, mirrors, faults or per-destination headers, sending to a single destination with no subset. The
endpoint stage still runs per request (the pool's balancer picks), but only from a pool without outlier
detection, whose balancer object then lives as long as the table (proxy/outbound/endpoints.Pool).

A plan is keyed by the table object: a push builds a new table (ConfigState), and the router drops every
plan made for the old one (MeshRouter.pick). PLAN_CACHE_SIZE bounds the (host, port) pairs held.
"""

from __future__ import annotations

from proxy.core.errors import NoCluster, NoRoute
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.outbound import concrete
from proxy.outbound.balancer import LeastRequest, RandomPick, RoundRobin
from proxy.outbound.endpoints import Pool
from proxy.outbound.policy import DEFAULT_POLICY
from proxy.outbound.route import CompiledRoute
from proxy.outbound.table import RoutingTable

PLAN_CACHE_SIZE = 1024  # (host, port) pairs with a plan; past it, the cache starts over


# Balancers whose pick over one endpoint reads nothing of the request and changes nothing (unlike a hash
# balancer, which may make a cookie, or PASSTHROUGH, which picks the request's own host).
_PURE = (RoundRobin, RandomPick, LeastRequest)


class Plan:
    """Everything but the endpoint pick: `pick(head)` is the balancer's pick plus one Target.

    `target`: with one endpoint, a pure balancer and no breaker, the one Target every request gets (it
    holds no per-request state: no in-flight count, no breaker slot), so the router hands it out as is;
    else None."""

    __slots__ = ("port", "cluster", "balancer", "counts", "policy", "breaker", "target", "pool")

    def __init__(self, port: int, cluster: str, balancer: object, policy: object, breaker: object,
                 pool: Pool | None = None) -> None:
        self.port = port
        self.cluster = cluster
        self.balancer = balancer
        # a balancer with one endpoint never reads in-flight counts (LEAST_REQUEST): skip them
        self.counts = len(getattr(balancer, "endpoints", ())) != 1
        self.policy = policy
        self.breaker = breaker
        self.pool = pool  # decides each endpoint's transport (mutual TLS or not), once per push
        self.target: Target | None = None
        endpoints = getattr(balancer, "endpoints", ())
        if len(endpoints) == 1 and type(balancer) in _PURE and breaker is None:
            (endpoint,) = endpoints
            key, tls = pool.transport(port, endpoint) if pool is not None else (None, None)
            self.target = Target(endpoint.address, endpoint.ports.get(port, port), cluster, endpoint, balancer,
                                 policy, None, None, False, key, tls)

    def pick(self, head: RequestHead) -> Target:
        endpoint = self.balancer.pick(head)  # type: ignore[attr-defined]
        port = self.port
        key, tls = self.pool.transport(port, endpoint) if self.pool is not None else (None, None)
        return Target(endpoint.address, endpoint.ports.get(port, port), self.cluster, endpoint, self.balancer,
                      self.policy, self.breaker, None, self.counts, key, tls)  # type: ignore[arg-type]


def compile_plan(table: RoutingTable, fqdn: str, route: CompiledRoute | None, port: int,
                 locality: str) -> Plan | None:
    """The plan for requests to `fqdn` (the name the table knows) on `port`, or None when the answer may
    differ per request (then the router runs every stage each time). Raises nothing: a backend the stages
    would refuse (no cluster, port not exposed, no endpoint) gets no plan, and the stages raise per request."""
    if route is None:
        entry, policy = table.clusters.get(fqdn), DEFAULT_POLICY
        if entry is None or (entry.ports and port not in entry.ports):
            return None
    else:
        if route.tcp or len(route.rules) != 1:
            return None
        rule = route.rules[0]
        policy = rule.policy
        if (rule.matches or rule.local is not None or rule.policies is not None or len(rule.destinations) != 1
                or policy.fault is not None or policy.mirror is not None):  # type: ignore[attr-defined]
            return None
        if rule.destinations[0].subset:
            return None
        try:
            entry, fqdn, _, port, policy = concrete.destination(table, route, rule, port)
        except (NoCluster, NoRoute):
            return None
    pool = entry.pools.get("")
    if pool is None or pool.outlier is not None:  # ejections rebuild the balancers: pick from the pool each time
        return None
    balancer = pool.balancer_for(port, locality)
    if balancer is None:
        return None
    return Plan(port, pool.cluster_name(port), balancer, policy, pool.breaker_for(port) if pool.limited else None,
                pool)

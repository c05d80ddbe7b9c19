"""The endpoint stage of the outbound pipeline: which address of a backend's pool serves the request --
the pool's balancer (proxy/outbound/balancer.py, weighted.py; locality.py), without the endpoints outlier
detection ejected (outlier.py), with the cluster's circuit breaker (circuit_breaker.py) on the Target.

Raises NoCluster (an undefined subset) and NoHealthyUpstream (nothing to offer).
"""

from __future__ import annotations

from proxy.core.errors import NoCluster, NoHealthyUpstream
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.outbound.table import ClusterEntry, RoutingTable

RETRY_HOST_ATTEMPTS = 5  # Istio: host_selection_retry_max_attempts


def pick(entry: ClusterEntry, host: str, subset: str, port: int, head: RequestHead, policy: object,
         locality: str) -> Target:
    """The endpoint the balancer of `entry`'s `subset` pool picks for `port`, as a Target."""
    pool = entry.pools.get(subset)
    if pool is None:
        raise NoCluster(f"cluster outbound|{port}|{subset}|{host} not found: no DestinationRule defines "
                        f"subset {subset!r}")
    balancer = pool.balancer_for(port, locality)
    if balancer is None:
        raise NoHealthyUpstream(f"no healthy endpoint in cluster {pool.cluster_name(port)}")
    endpoint = balancer.pick(head)
    key, tls = pool.transport(port, endpoint)
    return Target(endpoint.address, endpoint.ports.get(port, port), pool.cluster_name(port), endpoint, balancer,
                  policy, pool.breaker_for(port) if pool.limited else None, pool.outlier, None, key, tls)


def mirror(table: RoutingTable, host: str, subset: str, port: int | None, head: RequestHead,
           locality: str) -> tuple[str, int, object] | None:
    """(address, port, TLS origination or None) of an endpoint of a mirror destination, or None when it has
    none; the copy goes the way the primary would go to that endpoint (mutual TLS to a sidecar)."""
    entry = table.clusters.get(host)
    if entry is None:
        return None
    if port is None:
        port = next(iter(entry.ports)) if len(entry.ports) == 1 else head.port
    pool = entry.pools.get(subset)
    balancer = pool.balancer_for(port, locality) if pool is not None else None
    if balancer is None:
        return None
    endpoint = balancer.pick(head)
    tls = pool.transport(port, endpoint)[1]  # type: ignore[union-attr]
    return endpoint.address, endpoint.ports.get(port, port), tls


def retry(table: RoutingTable, target: Target, head: RequestHead, tried: list[tuple[str, int]], attempt: int,
          locality: str) -> Target:
    """Another endpoint of `target`'s cluster for retry number `attempt`: one not in `tried` where the
    balancer offers one within RETRY_HOST_ATTEMPTS picks (Envoy's previous_hosts predicate, as Istio
    configures it, unless retryIgnorePreviousHosts is false); with retryRemoteLocalities, from the
    locality priority Pool.level_balancer gives."""
    balancer = target.balancer
    if balancer is None:
        return Target(target.address, target.port, target.cluster, policy=target.policy, breaker=target.breaker,
                      outlier=target.outlier, key=target.key, tls=target.tls)
    _, port_text, subset, host = target.cluster.split("|", 3)  # outbound|<service port>|<subset>|<host>
    port = int(port_text)
    retry_policy = getattr(target.policy, "retry", None)
    entry = table.clusters.get(host)
    pool = entry.pools.get(subset) if entry is not None else None
    if retry_policy is not None and retry_policy.remote_localities:
        if pool is not None:
            balancer = pool.level_balancer(port, locality, attempt) or balancer
    if retry_policy is not None and not retry_policy.ignore_previous_hosts:
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
    if pool is not None:  # the transport as decided for this endpoint (mutual TLS or not), as the first try's
        key, tls = pool.transport(port, endpoint)
    elif endpoint is target.endpoint:
        key, tls = target.key, target.tls
    else:  # the cluster left the config since the first try: no decision for another endpoint of it
        raise NoHealthyUpstream(f"cluster {target.cluster} is no longer configured: no endpoint to retry on")
    return Target(address, endpoint_port, target.cluster, endpoint, balancer, target.policy, target.breaker,
                  target.outlier, None, key, tls)

"""Hosts the mesh does not know: Istio's meshConfig.outboundTrafficPolicy on the outbound listener.

    outside(mode, host, port, tunnel)   the Target for a request (or CONNECT tunnel) to an unknown host

ALLOW_ANY (Istio's default): the request goes to the host:port the client asked for, as Istio's
PassthroughCluster / `allow_any` route (no retries, no route timeout); a name is resolved through the
pool's DNS cache (proxy/outbound/dns_cache.py). REGISTRY_ONLY: refused, as Istio's `block_all` route: an
HTTP request gets a 502 answered by the sidecar (a direct response, so no response flag; the access log's
cluster is BlackHoleCluster), a CONNECT raises BlackHole (502, flag UH: Istio's TCP BlackHoleCluster).
A host the registry knows (services, ServiceEntry hosts) never comes here: it is routed by the mesh.

Passthrough traffic shares one circuit breaker per process with Envoy's default thresholds (1024
connections or requests in flight, 1024 waiting): Istio raises PassthroughCluster's to 2^32 - 1, but
nothing an app sends anywhere may hold a sidecar without a bound. Over them: 503 UO.
"""

from __future__ import annotations

from proto import xds
from proxy.core.errors import BlackHole
from proxy.outbound.circuit_breaker import Breaker
from proxy.outbound.policy import RoutePolicy
from proxy.outbound.redirect import DirectResponse
from proxy.core.target import Target

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"

# Istio's allow_any route: no retries, no timeout (a body is never kept for a retry)
PASSTHROUGH_POLICY = RoutePolicy(None, None, None)
PASSTHROUGH_LIMITS = xds.PoolLimits(max_connections=1024, max_pending=1024, max_requests=2048)
PASSTHROUGH_BREAKER = Breaker(PASSTHROUGH_CLUSTER, PASSTHROUGH_LIMITS)

_BLOCKED = DirectResponse(xds.DirectResponse(
    status=502, body=b"host not in the mesh registry (outboundTrafficPolicy REGISTRY_ONLY)\n"))
BLACKHOLE_TARGET = Target("", 0, BLACKHOLE_CLUSTER, policy=RoutePolicy(None, None, None, local=_BLOCKED))


def outside(mode: str, host: str, port: int, tunnel: bool = False) -> Target:
    """Where a request (`tunnel`: a CONNECT) to `host:port`, which the registry does not know, goes."""
    if mode == xds.REGISTRY_ONLY:
        if tunnel:
            raise BlackHole(f"{host}:{port} is not in the mesh registry (outboundTrafficPolicy REGISTRY_ONLY)",
                            flag="UH")
        return BLACKHOLE_TARGET
    return Target(host, port, PASSTHROUGH_CLUSTER, policy=PASSTHROUGH_POLICY, breaker=PASSTHROUGH_BREAKER)

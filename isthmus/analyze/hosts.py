"""Host names as pilot resolves and compares them (runtime/hostnames.py, shared with pilot), with the mesh's
domain suffix as the analyzers read it (ISTHMUS_DOMAIN_SUFFIX, isthmus/analyze/context.py).

    fqdn("reviews", "prod") -> "reviews.prod.svc.cluster.local"   (a name with a dot is used as written)
    gateway_ref("gw", "prod") -> "prod/gw"                          (Istio's resolveGatewayName)
    matches("*.example.com", "a.example.com") -> True               (Istio's host.Name.Matches)
    subsumes("*.example.com", "a.example.com") -> True              (host.Name.SubsetOf, reversed)
"""

from __future__ import annotations

from isthmus.analyze.context import SUFFIX
from runtime import hostnames
from runtime.hostnames import gateway_ref, matches

__all__ = ["fqdn", "gateway_ref", "matches", "subsumes"]


def fqdn(host: str, namespace: str) -> str:
    return hostnames.fqdn(host, namespace, SUFFIX)


def subsumes(wild: str, host: str) -> bool:
    """Whether every name `host` covers is covered by `wild`."""
    return hostnames.subset_of(host, wild)

"""Host names as Istio resolves them in config (pilot's ResolveShortnameToFQDN).

A name without a dot is a short name in the resource's namespace: `reviews` written in namespace `prod`
is `reviews.prod.<suffix>`. Anything with a dot (`reviews.prod.svc.cluster.local`, `api.example.com`,
and also `reviews.other`), an IP address or `*` is used as written: Istio never guesses that the
second label is a namespace. Names are lower-cased (DNS is case-insensitive).
A leaf below both the compiler (services/pilot/compile/) and the reference checks of validation
(services/pilot/validate/), which must resolve a host the same way.
"""

from __future__ import annotations


def fqdn(host: str, namespace: str, suffix: str = "svc.cluster.local") -> str:
    host = host.lower()
    if not host or host == "*" or "." in host or ":" in host:  # ':' only in an IPv6 address
        return host
    return f"{host}.{namespace}.{suffix}"


def service_host(service: str, namespace: str, suffix: str = "svc.cluster.local") -> str:
    """The host of a registered service: `reviews` in `prod` -> reviews.prod.<suffix>."""
    return f"{service}.{namespace}.{suffix}".lower()


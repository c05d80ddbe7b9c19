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



def gateway_ref(name: str, namespace: str) -> str:
    """A VirtualService's `gateways:` entry as "namespace/name" (Istio's resolveGatewayName): `gw` and `./gw` are
    in the VirtualService's `namespace`, legacy `gw.ns[.svc...]` is `ns/gw`; `mesh` stays `mesh`."""
    if name == "mesh":
        return name
    if "/" in name:
        ns, _, gw = name.partition("/")
        return f"{namespace if ns == '.' else ns}/{gw}"
    if "." in name:
        gw, ns = name.split(".")[:2]
        return f"{ns}/{gw}"
    return f"{namespace}/{name}"

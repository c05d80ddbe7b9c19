"""Host names as Istio resolves and compares them, shared by pilot (compile and validation must agree) and the
CLI's analyzers (which may not import services/).

Resolution (pilot's ResolveShortnameToFQDN): a name without a dot is a short name in the resource's namespace:
`reviews` written in namespace `prod` is `reviews.prod.<suffix>`. Anything with a dot (`reviews.prod.svc.cluster.local`,
`api.example.com`, and also `reviews.other`), an IP address or `*` is used as written: Istio never guesses that
the second label is a namespace. Names are lower-cased (DNS is case-insensitive).

Wildcards (pkg/config/host.Name): `*`, `*.example.com` or an exact name.
    matches(a, b)      a and b share at least one name (either covers the other)
    subset_of(a, b)    every name a covers, b covers too
    intersection(a, b) the more specific of the two when they overlap, else None (a gateway virtual host's
                       domain: istio's pilot/pkg/networking/core/gateway.go picks it the same way)
`*.example.com` covers `a.example.com` and `a.b.example.com`, never `example.com` itself; `*` covers all.
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


def _wild(name: str) -> bool:
    return name.startswith("*")


def subset_of(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if a == b:
        return True
    if not _wild(b):
        return False
    if _wild(a):
        return len(a) >= len(b) and a[1:].endswith(b[1:])
    return a.endswith(b[1:])


def matches(a: str, b: str) -> bool:
    return subset_of(a, b) or subset_of(b, a)


def intersection(a: str, b: str) -> str | None:
    if subset_of(a, b):
        return a.lower()
    if subset_of(b, a):
        return b.lower()
    return None

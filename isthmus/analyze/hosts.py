"""Host names as Istio resolves them, for the analyzers (the CLI may not import services/, so this repeats the
few lines of services/pilot/hosts.py; tests/analyze/test_hosts.py holds both to the same answers).

    fqdn("reviews", "prod") -> "reviews.prod.svc.cluster.local"   (a name with a dot is used as written)
    gateway_ref("gw", "prod") -> "prod/gw"                          (Istio's resolveGatewayName)
    matches("*.example.com", "a.example.com") -> True               (Istio's host.Name.Matches)
"""

from __future__ import annotations

from isthmus.analyze.context import SUFFIX


def fqdn(host: str, namespace: str) -> str:
    host = host.lower()
    if not host or host == "*" or "." in host or ":" in host:
        return host
    return f"{host}.{namespace}.{SUFFIX}"


def gateway_ref(name: str, namespace: str) -> str:
    if name == "mesh":
        return name
    if "/" in name:
        ns, _, gw = name.partition("/")
        return f"{namespace if ns == '.' else ns}/{gw}"
    if "." in name:
        gw, ns = name.split(".")[:2]
        return f"{ns}/{gw}"
    return f"{namespace}/{name}"


def matches(a: str, b: str) -> bool:
    """Whether host `a` matches `b`, either being a wildcard (`*`, `*.x`): Istio's host.Name.Matches."""
    a, b = a.lower(), b.lower()
    if a == b or a == "*" or b == "*":
        return True
    if a.startswith("*") and b.startswith("*"):
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return False


def subsumes(wild: str, host: str) -> bool:
    """Whether every name `host` covers is covered by `wild` (Istio's host.Name.SubsetOf, reversed)."""
    wild, host = wild.lower(), host.lower()
    if wild == "*" or wild == host:
        return True
    if wild.startswith("*"):
        return host.endswith(wild[1:])
    return False

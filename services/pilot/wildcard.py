"""Wildcard host names as Istio compares them (pkg/config/host.Name): `*`, `*.example.com` or an exact name.

    matches(a, b)      a and b share at least one name (either covers the other)
    subset_of(a, b)    every name a covers, b covers too
    intersection(a, b) the more specific of the two when they overlap, else None (a gateway virtual host's
                       domain: istio's pilot/pkg/networking/core/gateway.go picks it the same way)
`*.example.com` covers `a.example.com` and `a.b.example.com`, never `example.com` itself; `*` covers all.
Names compare lower-cased. A leaf below the compiler and validation, which must agree on it.
"""

from __future__ import annotations


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

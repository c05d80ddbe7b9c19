"""Warnings about what a submission refers to: VirtualService subsets no DestinationRule defines, and
Gateways a VirtualService binds to that do not exist.

    subset_warnings(submitted, stored) -> [ConfigError]   (warnings, never errors: order of applies is free)
    gateway_warnings(submitted, stored) -> [ConfigError]

A VirtualService naming a Gateway that does not exist is valid (Istio's too): it binds nothing there until the
Gateway is applied; the warning says so (as Istio's analyzer IST0101 does for a gateway reference).

Istio's analyzer IST0101 (ReferencedResourceNotFound, "host+subset in destinationrule"): a route to a
subset that no DestinationRule for its host defines gets 503 NC on every proxy until one does. The
check runs against the DestinationRules stored plus those in the same submission (which replace stored
ones of the same name): a submitted VirtualService is warned about each such destination (route and
mirror, http, tls and tcp), and a submitted DestinationRule about each stored VirtualService destination of
its host that it leaves undefined. Hosts resolve as the compiler resolves them (runtime/hostnames.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from proto.config_api import ConfigError
from proto.resources import Resource
from runtime.hostnames import fqdn, gateway_ref


def _subset_refs(vs: Resource) -> Iterator[tuple[str, str, str]]:
    """(path, host FQDN, subset) of every destination of a VirtualService that names a subset."""
    ns = vs.metadata.namespace
    for i, http in enumerate(vs.spec.http or []):
        for j, r in enumerate(http.route or []):
            if r.destination.subset:
                yield (f"spec.http[{i}].route[{j}].destination.subset", fqdn(r.destination.host, ns),
                       r.destination.subset)
        if http.mirror is not None and http.mirror.subset:
            yield f"spec.http[{i}].mirror.subset", fqdn(http.mirror.host, ns), http.mirror.subset
        for k, m in enumerate(http.mirrors or []):
            if m.destination.subset:
                yield f"spec.http[{i}].mirrors[{k}].destination.subset", fqdn(m.destination.host, ns), \
                    m.destination.subset
    for field in ("tls", "tcp"):
        for i, l4 in enumerate(getattr(vs.spec, field) or []):
            for j, r in enumerate(l4.route or []):
                if r.destination.subset:
                    yield (f"spec.{field}[{i}].route[{j}].destination.subset", fqdn(r.destination.host, ns),
                           r.destination.subset)


def _key(res: Resource) -> tuple[str, str, str]:
    return res.kind, res.metadata.namespace, res.metadata.name


def subset_warnings(submitted: list[Resource], stored: list[Resource]) -> list[ConfigError]:
    """`submitted` in document order (ConfigError.document is its 1-based position); `stored`: the stored
    DestinationRules and VirtualServices."""
    resources = {_key(r): r for r in stored}
    resources.update((_key(r), r) for r in submitted)
    defined: dict[str, set[str]] = {}
    for res in resources.values():
        if res.kind == "DestinationRule":
            host = fqdn(res.spec.host, res.metadata.namespace)
            defined.setdefault(host, set()).update(s.name for s in res.spec.subsets or [])
    warnings: list[ConfigError] = []

    def warn(document: int, res: Resource, path: str, message: str) -> None:
        warnings.append(ConfigError(document=document, kind=res.kind, name=res.metadata.name,
                                    namespace=res.metadata.namespace, path=path, message=message))

    submitted_keys = {_key(r) for r in submitted}
    for document, res in enumerate(submitted, 1):
        if res.kind == "VirtualService":
            for path, host, subset in _subset_refs(res):
                if subset not in defined.get(host, ()):
                    warn(document, res, path, f"subset {subset!r} of host {host} is not defined by any "
                         f"DestinationRule: requests routed to it get 503 (NC) until one defines it "
                         f"(apply DestinationRules before the routes that use them)")
        elif res.kind == "DestinationRule":
            host = fqdn(res.spec.host, res.metadata.namespace)
            for key, vs in resources.items():
                if key[0] != "VirtualService" or key in submitted_keys:
                    continue
                for path, dest, subset in _subset_refs(vs):
                    if dest == host and subset not in defined.get(host, ()):
                        warn(document, res, "spec.subsets", f"subset {subset!r} of host {host}, used by "
                             f"VirtualService {vs.metadata.namespace}/{vs.metadata.name} at {path}, is not defined "
                             f"by any DestinationRule: requests routed to it get 503 (NC) until one defines it")
    return warnings


def gateway_warnings(submitted: list[Resource], stored: list[Resource]) -> list[ConfigError]:
    """`submitted` in document order; `stored`: the stored Gateways (a submitted one replaces or adds to them)."""
    known = {f"{r.metadata.namespace}/{r.metadata.name}" for r in [*stored, *submitted] if r.kind == "Gateway"}
    warnings: list[ConfigError] = []
    for document, res in enumerate(submitted, 1):
        if res.kind != "VirtualService":
            continue
        refs = [("spec.gateways", res.spec.gateways or [])]
        for field in ("http", "tls", "tcp"):
            for i, route in enumerate(getattr(res.spec, field) or []):
                refs += [(f"spec.{field}[{i}].match[{j}].gateways", m.gateways or [])
                         for j, m in enumerate(route.match or [])]
        for path, names in refs:
            for k, name in enumerate(names):
                ref = gateway_ref(name, res.metadata.namespace)
                if ref != "mesh" and ref not in known:
                    warnings.append(ConfigError(
                        document=document, kind=res.kind, name=res.metadata.name, namespace=res.metadata.namespace,
                        path=f"{path}[{k}]", message=f"Gateway {ref} does not exist: the virtual service binds to "
                        "nothing there until it is applied"))
    return warnings

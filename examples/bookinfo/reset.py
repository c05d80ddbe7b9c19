"""The demo starts from its own known config, and says what it reset.

A walk-through leaves config behind (a RateLimit, a fault, a route by header...); the next demo must not
start under it. Before it applies its DestinationRule, 80/10/10 VirtualService, Telemetry and ingress
(bookinfo-gateway.yaml), the demo deletes every resource that would change its traffic and is not its own:
    VirtualService / DestinationRule / ServiceEntry   naming a demo host (reviews or frontend in the
                                                      `default` namespace, short, long or `*` form), in
                                                      any namespace (the oldest claim on a host wins; a
                                                      `*` VirtualService bound to a gateway would merge
                                                      with the demo's at its ingress gateway)
    Gateway                                           selecting the demo's ingress gateway (its labels
                                                      istio=ingressgateway, app=istio-ingressgateway) or
                                                      every gateway (no selector), in any namespace: its
                                                      servers would merge with the demo's on port 80
    RateLimit                                         selecting a demo workload (docs/ratelimit.md)
    AuthorizationPolicy / RequestAuthentication       in `default`, selecting a demo workload or with no
                                                      selector (a deny-all would stop the demo's traffic)
    Telemetry                                         in `default`, selecting a demo workload or with no
                                                      selector (it would override the demo's tracing and
                                                      access logs; the root namespace's mesh default stays)
The last four also in istio-system, the gateway's namespace, when they select the ingress gateway (there,
one without a selector is the mesh-wide default of Istio's root namespace, and stays).
Its own resources are replaced by the apply (`configured` when a walk-through had changed them).
Everything else in the mesh is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proto.config_api import ApplyReply, DeleteRequest, GetReply, GetRequest, ResourceRef
from proto.subjects import CONFIG_DELETE, CONFIG_GET
from runtime.hostnames import fqdn

HERE = Path(__file__).resolve().parent
CONFIG = (HERE / "destination-rule-reviews.yaml", HERE / "virtual-service-reviews-80-10-10.yaml",
          HERE / "telemetry.yaml", HERE / "bookinfo-gateway.yaml")
NAMESPACE = "default"
SERVICES = ("frontend", "reviews")
WORKLOAD_LABELS = ({"app": "frontend", "version": "v1"},
                   *({"app": "reviews", "version": v} for v in ("v1", "v2", "v3")))
GATEWAY_NAMESPACE = "istio-system"  # where the demo's ingress gateway runs (Istio's install)
GATEWAY_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}  # `gateway run`'s defaults
WHAT_OWN_IS = {("DestinationRule", NAMESPACE, "reviews"): "subsets",
               ("VirtualService", NAMESPACE, "reviews"): "80/10/10 split",
               ("Telemetry", NAMESPACE, "bookinfo"): "tracing and access logs",
               ("Telemetry", GATEWAY_NAMESPACE, "bookinfo-ingressgateway"): "tracing and access logs at the gateway",
               ("Gateway", NAMESPACE, "bookinfo-gateway"): "ingress on ports 80 and 443",
               ("VirtualService", NAMESPACE, "bookinfo"): "routes from the ingress gateway to the frontend"}
OWN = set(WHAT_OWN_IS)
KINDS = ("VirtualService", "DestinationRule", "ServiceEntry", "Gateway", "RateLimit", "AuthorizationPolicy",
         "RequestAuthentication", "Telemetry")
SELECTING = ("RateLimit", "AuthorizationPolicy", "RequestAuthentication", "Telemetry")  # kinds that pick workloads by labels
TIMEOUT = 10.0


def demo_hosts(suffix: str | None = None) -> set[str]:
    suffix = suffix or os.environ.get("ISTHMUS_DOMAIN_SUFFIX", "svc.cluster.local")
    return {f"{service}.{NAMESPACE}.{suffix}" for service in SERVICES}


def names_a_demo_host(written: Iterable[str], namespace: str, hosts: set[str], suffix: str) -> bool:
    for host in written:
        full = fqdn(str(host), namespace, suffix)
        if full in hosts or full == "*" or (full.startswith("*.") and any(h.endswith(full[1:]) for h in hosts)):
            return True
    return False


def selects_a_demo_workload(spec: dict[str, Any], namespace: str) -> bool:
    """A policy (`selector.matchLabels`, none: the whole namespace) that applies to a demo workload or to the
    demo's ingress gateway."""
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    if namespace == NAMESPACE:
        return any(all(labels.get(k) == v for k, v in wanted.items()) for labels in WORKLOAD_LABELS)
    if namespace == GATEWAY_NAMESPACE:
        if not wanted:  # the root namespace's mesh-wide default stays; another namespace's applies to the gateway
            return namespace != os.environ.get("ISTHMUS_ROOT_NAMESPACE", "istio-system")
        return all(GATEWAY_LABELS.get(k) == v for k, v in wanted.items())
    return False


def selects_the_demo_gateway(spec: dict[str, Any]) -> bool:
    """A Gateway whose `selector` (plain labels, Istio's; none: every gateway) picks the demo's ingress gateway."""
    wanted = spec.get("selector") or {}
    return all(GATEWAY_LABELS.get(str(k)) == v for k, v in wanted.items())


def leftovers(found: dict[str, list[dict[str, Any]]], suffix: str | None = None) -> list[ResourceRef]:
    """Of `found` (kind -> resources as `get` returns them), those that would change the demo's traffic
    and are not its own config, sorted by kind, namespace, name."""
    suffix = suffix or os.environ.get("ISTHMUS_DOMAIN_SUFFIX", "svc.cluster.local")
    hosts = demo_hosts(suffix)
    stale = []
    for kind, resources in found.items():
        for resource in resources:
            meta, spec = resource.get("metadata") or {}, resource.get("spec") or {}
            namespace, name = str(meta.get("namespace") or NAMESPACE), str(meta.get("name") or "")
            if (kind, namespace, name) in OWN:
                continue
            if kind in SELECTING:
                hit = selects_a_demo_workload(spec, namespace)
            elif kind == "Gateway":
                hit = selects_the_demo_gateway(spec)
            elif kind == "DestinationRule":
                hit = names_a_demo_host([spec.get("host") or ""], namespace, hosts, suffix)
            else:
                hit = names_a_demo_host(spec.get("hosts") or [], namespace, hosts, suffix)
            if hit:
                stale.append(ResourceRef(kind=kind, name=name, namespace=namespace))
    return sorted(stale, key=lambda r: (KINDS.index(r.kind) if r.kind in KINDS else 99, r.namespace, r.name))


async def find_leftovers(bus: Any) -> list[ResourceRef]:
    found: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        reply = await bus.call(CONFIG_GET, GetRequest(kind=kind), GetReply, TIMEOUT)
        if not reply.ok:
            raise RuntimeError(f"cannot list {kind}: {reply.error}")
        found[kind] = list(reply.resources)
    return leftovers(found)


async def reset(bus: Any) -> tuple[list[str], int]:
    """Delete the leftovers. Returns one line per resource deleted, for the caller to print, and the etcd
    revision of the deletion (0: nothing to delete)."""
    stale = await find_leftovers(bus)
    if not stale:
        return [], 0
    reply = await bus.call(CONFIG_DELETE, DeleteRequest(resources=stale), ApplyReply, TIMEOUT)
    if not reply.ok:
        reasons = "; ".join(e.message for e in reply.errors) or "no reason given"
        raise RuntimeError(f"cannot delete what an earlier run left: {reasons}")
    lines = [f"deleted {r.kind} {r.namespace}/{r.name} (left from an earlier run; it would change the demo's traffic)"
             for r in stale]
    return lines, reply.revision


def replaced(reply: ApplyReply) -> list[str]:
    """The demo's own resources that the apply put back (a walk-through had changed them)."""
    return [f"{r.ref.kind} {r.ref.namespace}/{r.ref.name} was changed since: back to the demo's "
            f"{WHAT_OWN_IS.get((r.ref.kind, r.ref.namespace, r.ref.name), 'config')}"
            for r in reply.results if r.action == "configured"]

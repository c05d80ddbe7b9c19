"""`isthmus x describe service`: what applies to one service, from pilot's config (the config API's resources)
and pilot's compiled cluster and routes (endpoints as the registry reports them, with health). Pure functions
of decoded resources (tests/cli/test_describe.py)."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

SUFFIX = "svc.cluster.local"


def fqdn(host: str, namespace: str, suffix: str = SUFFIX) -> str:
    """Istio's short-name rule: `reviews` in namespace ns is reviews.ns.<suffix>; `reviews.ns` gets the suffix."""
    if host == "*" or host.startswith("*.") or host.count(".") >= 2:
        return host
    return f"{host}.{namespace}.{suffix}" if "." not in host else f"{host}.{suffix}"


def host_matches(pattern: str, namespace: str, target: str) -> bool:
    full = fqdn(pattern, namespace)
    return full == target or (full.startswith("*") and fnmatch.fnmatchcase(target, full))


def _meta(resource: dict[str, Any]) -> tuple[str, str]:
    meta = resource.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _selects(spec: dict[str, Any], labels: list[dict[str, str]], field: str = "matchLabels") -> bool:
    wanted = (spec.get("selector") or {}).get(field) or {}
    return not wanted or any(all(l.get(k) == v for k, v in wanted.items()) for l in labels)


def describe(target: str, namespace: str, resources: dict[str, list[dict[str, Any]]], compiled: dict[str, Any],
             root_namespace: str = "istio-system") -> dict[str, Any]:
    """The view: `resources` by kind (VirtualService, DestinationRule, PeerAuthentication, AuthorizationPolicy,
    ServiceEntry), `compiled` pilot's {"cluster", "route"} for `target`."""
    cluster = compiled.get("cluster") or {}
    route = compiled.get("route") or {}
    endpoints = cluster.get("endpoints") or []
    labels = [e.get("labels") or {} for e in endpoints]
    view: dict[str, Any] = {"service": target, "namespace": namespace, "ports": cluster.get("ports") or [],
                            "known_to_pilot": bool(cluster)}
    view["endpoints"] = [{"address": e.get("address"), "ports": e.get("ports") or {},
                          "health": "HEALTHY" if e.get("healthy", True) else "UNHEALTHY",
                          "labels": e.get("labels") or {}, "workload": e.get("workload", ""),
                          "mtls_ports": e.get("auto_mtls") or []} for e in endpoints]
    view["virtual_services"] = [
        {"name": "/".join(_meta(vs)), "hosts": (vs.get("spec") or {}).get("hosts") or [],
         "gateways": (vs.get("spec") or {}).get("gateways") or ["mesh"]}
        for vs in resources.get("VirtualService", [])
        if any(host_matches(h, _meta(vs)[0], target) for h in (vs.get("spec") or {}).get("hosts") or [])]
    view["routes"] = [{"match": rule.get("matches") or [], "destinations": rule.get("destinations") or [],
                       **({"timeout_ms": rule["timeout_ms"]} if rule.get("timeout_ms") else {}),
                       **({"retries": rule["retry"].get("attempts")} if rule.get("retry") else {}),
                       **({"fault": True} if rule.get("fault") else {})}
                      for rule in route.get("rules") or []]
    view["destination_rules"] = [
        {"name": "/".join(_meta(dr)), "subsets": [{"name": s.get("name"), "labels": s.get("labels") or {}}
                                                  for s in (dr.get("spec") or {}).get("subsets") or []],
         "traffic_policy": (dr.get("spec") or {}).get("trafficPolicy") or {}}
        for dr in resources.get("DestinationRule", [])
        if host_matches(str((dr.get("spec") or {}).get("host") or ""), _meta(dr)[0], target)]
    view["compiled_policy"] = {"lb": cluster.get("lb", "ROUND_ROBIN"), "tls": (cluster.get("tls") or {}).get("mode")
                               or "auto mTLS", "source": cluster.get("source", "")}
    applies = [pa for pa in resources.get("PeerAuthentication", [])
               if _meta(pa)[0] in (namespace, root_namespace) and _selects(pa.get("spec") or {}, labels)]
    # the most specific wins: a workload selector, then the namespace's, then the mesh's (root namespace)
    ranked = sorted(applies, key=lambda pa: (bool((pa.get("spec") or {}).get("selector")), _meta(pa)[0] == namespace),
                    reverse=True)
    mode = "PERMISSIVE (default)"
    for pa in ranked:
        set_mode = ((pa.get("spec") or {}).get("mtls") or {}).get("mode")
        if set_mode and set_mode != "UNSET":
            mode = f"{set_mode} ({'/'.join(_meta(pa))})"
            break
    view["mtls"] = {"mode": mode, "peer_authentications": ["/".join(_meta(pa)) for pa in ranked]}
    view["authorization_policies"] = [
        {"name": "/".join(_meta(ap)), "action": (ap.get("spec") or {}).get("action") or "ALLOW",
         "rules": len((ap.get("spec") or {}).get("rules") or [])}
        for ap in resources.get("AuthorizationPolicy", [])
        if _meta(ap)[0] in (namespace, root_namespace) and _selects(ap.get("spec") or {}, labels)]
    return view


def _dest(d: dict[str, Any]) -> str:
    text = str(d.get("host", "?")) + (f"|{d['subset']}" if d.get("subset") else "")
    return text + (f" {d.get('weight', 100)}%" if "weight" in d else "")


def lines(view: dict[str, Any]) -> list[str]:
    """The one-screen text form."""
    out = [f"Service: {view['service']}" + ("" if view["known_to_pilot"] else "   (pilot compiles no such service)"),
           f"   Ports: {', '.join(str(p) for p in view['ports']) or '-'}"]
    healthy = sum(1 for e in view["endpoints"] if e["health"] == "HEALTHY")
    out.append(f"   Endpoints: {len(view['endpoints'])} ({healthy} healthy)")
    for e in view["endpoints"]:
        ports = ",".join(str(p) for p in (e["ports"] or {}).values())
        labels = ",".join(f"{k}={v}" for k, v in sorted(e["labels"].items()))
        out.append(f"     {e['address']}:{ports}  {e['health']}  {labels or '-'}  {e['workload'] or ''}".rstrip())
    for dr in view["destination_rules"]:
        out.append(f"DestinationRule: {dr['name']}")
        for s in dr["subsets"]:
            out.append(f"   Subset {s['name']}: " + ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())))
        if dr["traffic_policy"]:
            out.append(f"   Traffic policy: {json.dumps(dr['traffic_policy'], separators=(',', ':'))}")
    if not view["destination_rules"]:
        out.append("DestinationRule: none")
    policy = view["compiled_policy"]
    out.append(f"   Compiled: lb {policy['lb']}, tls {policy['tls']}")
    for vs in view["virtual_services"]:
        out.append(f"VirtualService: {vs['name']}  (gateways: {', '.join(vs['gateways'])})")
    if not view["virtual_services"]:
        out.append("VirtualService: none (requests go to every endpoint)")
    for rule in view["routes"]:
        match = " | ".join(str(m.get("uri") or m) for m in rule["match"]) or "/*"
        extra = "".join(f", {k} {rule[k]}" for k in ("timeout_ms", "retries", "fault") if k in rule)
        out.append(f"   {match} -> {', '.join(_dest(d) for d in rule['destinations']) or '(answered by the sidecar)'}"
                   f"{extra}")
    out.append(f"mTLS: {view['mtls']['mode']}")
    for ap in view["authorization_policies"]:
        out.append(f"AuthorizationPolicy: {ap['name']} ({ap['action']}, {ap['rules']} rules)")
    if not view["authorization_policies"]:
        out.append("AuthorizationPolicy: none (every request is allowed)")
    return out

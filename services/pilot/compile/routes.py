"""Route generator: one RouteConfig per VirtualService host (Istio's RDS virtual host for it).

Hosts and destination hosts resolve in the VirtualService's namespace (hosts.fqdn). When two
VirtualServices claim a host, the oldest wins and the other is ignored for that host: Istio merges
VirtualServices only for gateways. Header names are lower-cased; the header keys Istio ignores in a
match (uri, scheme, method, authority) are dropped. A lone destination gets weight 100 (it takes all
traffic whatever its weight); with several, an unset weight is 0. A match whose own `gateways` leave
out `mesh` is dropped here (Istio applies it on those gateways only: compile/gateway.py compiles it for them
with http_rule/tcp_rule), as is a VirtualService bound to gateways only; a rule left with no match is dropped
whole, never turned into a catch-all.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from proto import xds
from proto.networking import (
    HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, L4MatchAttributes, RouteDestination, StringMatch, TCPRoute,
)
from proto.xds import HttpRule, RouteConfig, RouteMatch, TcpMatch, TcpRule, WeightedDestination
from runtime.hostnames import fqdn
from services.pilot.compile.resilience import resilience
from services.pilot.compile.shaping import headers, mirrors, shaping
from services.pilot.compile.state import MeshState

IGNORED_HEADER_KEYS = ("uri", "scheme", "method", "authority")


def _string_match(sm: StringMatch | None) -> xds.StringMatch | None:
    if sm is None:
        return None
    return xds.StringMatch(exact=sm.exact, prefix=sm.prefix, regex=sm.regex)


def _headers(headers: dict[str, StringMatch] | None) -> dict[str, xds.StringMatch]:
    return {name.lower(): xds.StringMatch(exact=sm.exact, prefix=sm.prefix, regex=sm.regex)
            for name, sm in (headers or {}).items() if name.lower() not in IGNORED_HEADER_KEYS}


def _match(m: HTTPMatchRequest) -> RouteMatch:
    return RouteMatch(uri=_string_match(m.uri), method=_string_match(m.method), headers=_headers(m.headers),
                      port=m.port, scheme=_string_match(m.scheme), authority=_string_match(m.authority),
                      query_params={name: xds.StringMatch(exact=sm.exact, prefix=sm.prefix, regex=sm.regex)
                                    for name, sm in (m.query_params or {}).items()},
                      without_headers=_headers(m.without_headers), ignore_uri_case=bool(m.ignore_uri_case),
                      source_labels=dict(m.source_labels or {}), source_namespace=m.source_namespace)


def _for_sidecars(m: HTTPMatchRequest | L4MatchAttributes) -> bool:
    """A match naming gateways overrides the VirtualService's: without `mesh` it never applies to sidecars."""
    return not m.gateways or "mesh" in m.gateways


def destinations(routes: list[HTTPRouteDestination] | list[RouteDestination], namespace: str,
                  suffix: str) -> list[WeightedDestination]:
    lone = len(routes) == 1
    return [
        WeightedDestination(
            host=fqdn(r.destination.host, namespace, suffix),
            subset=r.destination.subset,
            port=r.destination.port.number if r.destination.port else None,
            weight=100 if lone else (r.weight or 0),
            headers=headers(r.headers) if isinstance(r, HTTPRouteDestination) else None,
        )
        for r in routes
    ]


def tcp_rule(route: TCPRoute, namespace: str, suffix: str,
             applies: Callable[[L4MatchAttributes], bool] = _for_sidecars) -> TcpRule | None:
    """`applies`: which matches are for the proxy being compiled (sidecars by default; a gateway's own filter)."""
    sidecar = [m for m in route.match or [] if applies(m)]
    if route.match and not sidecar:
        return None
    return TcpRule(matches=[TcpMatch(port=m.port, source_labels=dict(m.source_labels or {}),
                                     source_namespace=m.source_namespace) for m in sidecar],
                   destinations=destinations(route.route or [], namespace, suffix))


def http_rule(route: HTTPRoute, namespace: str, suffix: str,
              applies: Callable[[HTTPMatchRequest], bool] = _for_sidecars) -> HttpRule | None:
    """None when no match of the rule applies to the proxy being compiled (`applies`: sidecars by default,
    compile/gateway.py passes a gateway's); the rule then never applies there."""
    sidecar = [m for m in route.match or [] if applies(m)]
    if route.match and not sidecar:
        return None
    return HttpRule(name=route.name or "", matches=[_match(m) for m in sidecar],
                    destinations=destinations(route.route or [], namespace, suffix),
                    mirrors=mirrors(route, namespace, suffix),
                    **resilience(route), **shaping(route))  # type: ignore[arg-type]  # timeout, retries, fault


def build_routes(state: MeshState) -> dict[str, RouteConfig]:
    routes: dict[str, RouteConfig] = {}
    for stored in state.of_kind("VirtualService"):
        vs = stored.resource
        if vs.spec.gateways and "mesh" not in vs.spec.gateways:
            continue  # bound to gateways only: not sidecar config
        namespace = vs.metadata.namespace
        rules = [rule for rule in (http_rule(r, namespace, state.domain_suffix) for r in vs.spec.http) if rule]
        tcp = [rule for rule in (tcp_rule(r, namespace, state.domain_suffix) for r in vs.spec.tcp) if rule]
        for written in vs.spec.hosts:
            host = fqdn(written, namespace, state.domain_suffix)
            if host not in routes:  # else an older VirtualService owns it
                routes[host] = RouteConfig(host=host, version=stored.revision, source=stored.source, rules=rules,
                                           tcp=tcp)
    return routes


def referenced_hosts(routes: dict[str, RouteConfig]) -> dict[str, int]:
    """Destination host -> the highest version among the routes that send to it."""
    hosts: dict[str, int] = {}
    for route in routes.values():
        for rule in route.rules:
            for dest in [*rule.destinations, *rule.mirrors]:
                hosts[dest.host] = max(hosts.get(dest.host, 0), route.version)
        for tcp in route.tcp:
            for dest in tcp.destinations:
                hosts[dest.host] = max(hosts.get(dest.host, 0), route.version)
    return hosts


def mark_undefined(routes: dict[str, RouteConfig], clusters: dict[str, xds.ClusterConfig]) -> dict[str, RouteConfig]:
    """Routes with each destination whose subset no DestinationRule defines (or whose host has no cluster)
    marked `undefined`, so a proxy applies them at once instead of waiting for the subset (it answers
    that destination 503 NC, as Envoy does for Istio's route to a subset cluster CDS never sent).
    Routes with nothing to mark are returned as they were (same objects)."""
    defined = {host: {s.name for s in c.subsets} for host, c in clusters.items()}

    def mark(dests: list[WeightedDestination]) -> list[WeightedDestination] | None:
        flags = [d.host not in defined or bool(d.subset and d.subset not in defined[d.host]) for d in dests]
        if flags == [d.undefined for d in dests]:
            return None
        return [msgspec.structs.replace(d, undefined=flag) for d, flag in zip(dests, flags)]

    marked: dict[str, RouteConfig] = {}
    for host, route in routes.items():
        rules = [msgspec.structs.replace(r, destinations=d) if (d := mark(r.destinations)) is not None else r
                 for r in route.rules]
        tcp = [msgspec.structs.replace(r, destinations=d) if (d := mark(r.destinations)) is not None else r
               for r in route.tcp]
        changed = any(a is not b for a, b in zip(rules, route.rules)) or any(a is not b for a, b in zip(tcp, route.tcp))
        marked[host] = msgspec.structs.replace(route, rules=rules, tcp=tcp) if changed else route
    return marked

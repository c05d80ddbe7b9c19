"""Semantic checks of a VirtualService (Istio's ValidateVirtualService, validateHTTPRoute, validateTCPRoute
and the analyzer's unreachable rules), for the fields Isthmus supports, plus errors for values Istio
accepts but Isthmus does not implement yet ("not supported yet"). An HTTP rule's route/redirect/
directResponse, rewrite, headers, CORS and mirrors are checked in shaping.py, its timeout, retries and
fault in resilience.py.
"""

from __future__ import annotations

import msgspec

from proto.networking import (
    HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, L4MatchAttributes, RouteDestination, TCPRoute,
    VirtualServiceSpec,
)
from services.pilot.validate.checks import (
    DNS1123_LABEL, HEADER_NAME, IGNORED_HEADER_KEYS, check_destination, check_host, check_labels, check_port,
    check_string_match,
)
from services.pilot.validate.findings import Findings
from services.pilot.validate.resilience import http_resilience
from services.pilot.validate.shaping import http_shaping


def virtual_service(spec: VirtualServiceSpec, f: Findings) -> None:
    if not spec.hosts:
        f.error("spec.hosts", "at least one host is required (delegate VirtualServices are not supported yet)")
    seen: set[str] = set()
    for i, host in enumerate(spec.hosts):
        if host == "*":
            f.error(f"spec.hosts[{i}]", "wildcard host * is not allowed for virtual services bound to the mesh")
            continue
        check_host(host, f"spec.hosts[{i}]", f, allow_ip=True)
        if host.lower() in seen:
            f.error(f"spec.hosts[{i}]", f"duplicate host `{host}` in virtual service")
        seen.add(host.lower())
    for i, gateway in enumerate(spec.gateways or []):
        if gateway != "mesh":
            f.error(f"spec.gateways[{i}]", f"gateway `{gateway}` is not supported yet (only `mesh`, the sidecars)")
    if spec.tls:  # until pilot compiles tls routes (issue 13, in progress)
        f.error("spec.tls", "tls routes are not supported yet")
    if not spec.http and not spec.tcp and not spec.tls:
        f.error("spec", "http or tcp must be provided in virtual service (tls routes are not supported yet)")
    for i, route in enumerate(spec.http):
        path = f"spec.http[{i}]"
        for j, match in enumerate(route.match or []):
            _http_match(match, f"{path}.match[{j}]", f)
        if route.route:
            _destinations(route.route, f"{path}.route", f)
        http_shaping(route, path, f)  # route/redirect/directResponse, rewrite
        http_resilience(route, path, f)  # timeout, retries, fault
    _unreachable_rules(spec.http, f)
    for i, tcp in enumerate(spec.tcp):
        _tcp_route(tcp, f"spec.tcp[{i}]", f)


def _tcp_route(route: TCPRoute, path: str, f: Findings) -> None:
    """Istio's validateTCPRoute: at least one destination; matches on port and caller only."""
    for j, match in enumerate(route.match or []):
        _port_and_caller(match, f"{path}.match[{j}]", f)
    if not route.route:
        f.error(f"{path}.route", "TCP route is required")
        return
    _destinations(route.route, f"{path}.route", f)


def _port_and_caller(match: L4MatchAttributes | HTTPMatchRequest, path: str, f: Findings) -> None:
    """The match fields tcp and http routes share: port, sourceLabels, sourceNamespace, gateways."""
    if match.port is not None:
        check_port(match.port, f"{path}.port", f)
    check_labels(match.source_labels or {}, f"{path}.sourceLabels", f)
    if match.source_namespace is not None and not DNS1123_LABEL.match(match.source_namespace):
        f.error(f"{path}.sourceNamespace", f"`{match.source_namespace}` is not a valid namespace name")
    gateways = match.gateways or []
    if gateways and "mesh" not in gateways:
        f.warn(f"{path}.gateways", f"this match applies only to gateways {', '.join(gateways)}, never to sidecars; "
                                   "Isthmus runs no gateways, so it is dropped")


def _http_match(match: HTTPMatchRequest, path: str, f: Findings) -> None:
    if match.uri is not None:
        check_string_match(match.uri, f"{path}.uri", f, allow_empty_prefix=True)
    for field in ("scheme", "method", "authority"):
        sm = getattr(match, field)
        if sm is not None:
            check_string_match(sm, f"{path}.{field}", f)
    for field, headers in (("headers", match.headers), ("withoutHeaders", match.without_headers)):
        for name, sm in (headers or {}).items():
            hpath = f"{path}.{field}[{name}]"
            if not HEADER_NAME.match(name):
                f.error(hpath, f"`{name}` is not a valid header name")
            elif name.lower() in IGNORED_HEADER_KEYS:
                f.warn(hpath, f"header key `{name}` is ignored (as Istio does); use the `{name.lower()}` match field")
            elif name != name.lower():
                f.warn(hpath, f"header names match case-insensitively: `{name}` is matched as `{name.lower()}`")
            check_string_match(sm, hpath, f, allow_presence=True)
    for name, sm in (match.query_params or {}).items():
        qpath = f"{path}.queryParams[{name}]"
        if not name:
            f.error(qpath, "query parameter name must not be empty")
        check_string_match(sm, qpath, f, allow_presence=True)
    _port_and_caller(match, path, f)


def _destinations(routes: list[HTTPRouteDestination] | list[RouteDestination], path: str, f: Findings) -> None:
    total = weighted = 0
    for k, dest in enumerate(routes):
        dpath = f"{path}[{k}]"
        check_destination(dest.destination, f"{dpath}.destination", f)
        if dest.weight is not None:
            weighted += 1
            if dest.weight < 0:
                f.error(f"{dpath}.weight", f"weight {dest.weight} < 0")
            else:
                total += dest.weight
    if len(routes) > 1:
        if total == 0:
            f.error(path, "total destination weight = 0: with several destinations, weights are required")
        elif weighted < len(routes):
            f.warn(path, "some destinations have no weight: they get weight 0 and receive no traffic")
        elif total != 100:
            f.warn(path, f"destination weights sum to {total}, not 100: traffic is split as weight/{total}")


def _rule_name(route: HTTPRoute, i: int) -> str:
    return f'"{route.name}"' if route.name else f"#{i}"


def _unreachable_rules(routes: list[HTTPRoute], f: Findings) -> None:
    """Istio's analyzeUnreachableHTTPRules: rules after a catch-all, and matches repeated from earlier rules."""
    catch_all = -1
    seen: dict[bytes, int] = {}
    for i, route in enumerate(routes):
        if not route.match:
            if catch_all >= 0:
                f.warn(f"spec.http[{i}]", f"virtualService rule {_rule_name(route, i)} not used "
                                          "(only the last rule can have no matches)")
            catch_all = i
            continue
        if catch_all >= 0:
            f.warn(f"spec.http[{i}]", f"virtualService rule {_rule_name(route, i)} not used "
                                      "(route without matches defined before)")
            continue
        duplicates = 0
        for j, match in enumerate(route.match):
            key = msgspec.json.encode(msgspec.structs.replace(match, name=None))
            if key in seen:
                duplicates += 1
                f.warn(f"spec.http[{i}].match[{j}]", f"virtualService rule {_rule_name(route, i)} match #{j} is not "
                                                     f"used (duplicate match in rule #{seen[key]})")
            else:
                seen[key] = i
        if duplicates == len(route.match):
            f.warn(f"spec.http[{i}]", f"virtualService rule {_rule_name(route, i)} not used "
                                      "(all matches used by prior rules)")

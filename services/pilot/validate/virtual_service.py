"""Semantic checks of a VirtualService (Istio's ValidateVirtualService, validateGatewayNames, validateHTTPRoute,
validateTLSRoute, validateTCPRoute and the analyzer's unreachable rules), for the fields Isthmus supports, plus errors for values Istio
accepts but Isthmus does not implement yet ("not supported yet"). An HTTP rule's route/redirect/
directResponse, rewrite, headers, CORS and mirrors are checked in shaping.py, its timeout, retries and
fault in resilience.py.
"""

from __future__ import annotations

import msgspec

from proto.networking import (
    HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, L4MatchAttributes, RouteDestination, TCPRoute,
    TLSMatchAttributes, TLSRoute, VirtualServiceSpec,
)
from services.pilot.validate.checks import (
    DNS1123_LABEL, HEADER_NAME, IGNORED_HEADER_KEYS, check_destination, check_host, check_labels, check_port,
    check_string_match, host_problem,
)
from runtime.hostnames import subset_of
from services.pilot.validate.findings import Findings
from services.pilot.validate.resilience import http_resilience
from services.pilot.validate.shaping import http_shaping


def virtual_service(spec: VirtualServiceSpec, f: Findings) -> None:
    to_gateways_only = bool(spec.gateways) and "mesh" not in (spec.gateways or [])  # Istio's isGateway()
    if not spec.hosts:
        f.error("spec.hosts", "at least one host is required (delegate VirtualServices are not supported yet)")
    seen: set[str] = set()
    for i, host in enumerate(spec.hosts):
        if host == "*":
            if not to_gateways_only:
                f.error(f"spec.hosts[{i}]", "wildcard host * is not allowed for virtual services bound to the mesh")
            continue
        if to_gateways_only and host.startswith("*."):  # a gateway serves wildcard domains
            check_host(host[2:], f"spec.hosts[{i}]", f)
        else:
            check_host(host, f"spec.hosts[{i}]", f, allow_ip=True)
        if host.lower() in seen:
            f.error(f"spec.hosts[{i}]", f"duplicate host `{host}` in virtual service")
        seen.add(host.lower())
    check_gateway_names(spec.gateways or [], "spec.gateways", f)
    _unbound_match_gateways(spec, f)
    if not spec.http and not spec.tcp and not spec.tls:
        f.error("spec", "http, tcp or tls must be provided in virtual service")
    for i, tls in enumerate(spec.tls):
        _tls_route(tls, spec, f"spec.tls[{i}]", f)
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


def check_gateway_names(names: list[str], path: str, f: Findings) -> None:
    """`mesh`, `<gateway>` (the VirtualService's namespace) or `<namespace>/<gateway>` (Istio's
    validateGatewayNames). A Gateway that does not exist is no error: the binding then applies nowhere."""
    for i, name in enumerate(names):
        if name == "mesh":
            continue
        ns, slash, gw = name.partition("/")
        if not slash:
            if "." in name:  # Istio's legacy `name.namespace` form
                parts = name.split(".")
                f.warn(f"{path}[{i}]", f"using legacy gatewayName format `{name}`; prefer the <namespace>/<name> "
                                       f"format: `{parts[1]}/{parts[0]}`")
                if host_problem(name):
                    f.error(f"{path}[{i}]", f"`{name}` is not a valid gateway name")
            elif not DNS1123_LABEL.match(name):
                f.error(f"{path}[{i}]", f"invalid value for gateway name: `{name}`")
            continue
        if not ns or not gw:
            f.error(f"{path}[{i}]", "config namespace and gateway name cannot be empty")
            continue
        if not DNS1123_LABEL.match(ns):
            f.error(f"{path}[{i}]", f"invalid value for namespace: `{ns}`")
        if not DNS1123_LABEL.match(gw):
            f.error(f"{path}[{i}]", f"invalid value for gateway name: `{gw}`")


def _unbound_match_gateways(spec: VirtualServiceSpec, f: Findings) -> None:
    """A match naming only gateways the VirtualService is not bound to applies nowhere (Istio binds by the
    VirtualService's `gateways`, `mesh` when unset, then filters matches by theirs)."""
    bound = {_short(g) for g in spec.gateways or ["mesh"]}
    for field in ("http", "tls", "tcp"):
        for i, route in enumerate(getattr(spec, field)):
            for j, match in enumerate(route.match or []):
                if match.gateways and not any(_short(g) in bound for g in match.gateways):
                    f.warn(f"spec.{field}[{i}].match[{j}].gateways",
                           f"this match names only gateways the virtual service is not bound to "
                           f"({', '.join(match.gateways)} not in {', '.join(spec.gateways or ['mesh'])}): it never "
                           "applies")


def _short(name: str) -> str:
    return name.rpartition("/")[2]


def _tls_route(route: TLSRoute, spec: VirtualServiceSpec, path: str, f: Findings) -> None:
    """Istio's validateTLSRoute/validateTLSMatch/validateSniHost: sniHosts required, each a subset of a host of
    the VirtualService; a route is required. Sidecars do not route TLS by SNI yet: a tls match that applies to
    them (its own `gateways`, else the VirtualService's, name `mesh` or are unset) is refused."""
    if not route.match:
        f.error(f"{path}.match", "TLS route must have at least one match condition")
    for j, match in enumerate(route.match):
        mpath = f"{path}.match[{j}]"
        gateways = match.gateways if match.gateways else spec.gateways
        if not gateways or "mesh" in gateways:
            f.error(mpath, "tls routes are served by gateways only: Isthmus's sidecars do not route TLS by SNI yet; "
                           "bind the VirtualService (or this match's `gateways`) to gateways without `mesh`")
        if not match.sni_hosts:
            f.error(f"{mpath}.sniHosts", "TLS match must have at least one SNI host")
        for k, sni in enumerate(match.sni_hosts):
            spath = f"{mpath}.sniHosts[{k}]"
            if sni != "*":
                problem = host_problem(sni[2:] if sni.startswith("*.") else sni)
                if problem:
                    f.error(spath, problem)
                    continue
            if not any(subset_of(sni, host) for host in spec.hosts):
                f.error(spath, f"SNI host `{sni}` is not a compatible subset of any of the virtual service hosts: "
                               f"[{', '.join(spec.hosts)}]")
        _port_and_caller(match, mpath, f)
    if not route.route:
        f.error(f"{path}.route", "TLS route is required")
        return
    _destinations(route.route, f"{path}.route", f)


def _port_and_caller(match: L4MatchAttributes | HTTPMatchRequest | TLSMatchAttributes, path: str, f: Findings) -> None:
    """The match fields tcp and http routes share: port, sourceLabels, sourceNamespace, gateways."""
    if match.port is not None:
        check_port(match.port, f"{path}.port", f)
    check_labels(match.source_labels or {}, f"{path}.sourceLabels", f)
    if match.source_namespace is not None and not DNS1123_LABEL.match(match.source_namespace):
        f.error(f"{path}.sourceNamespace", f"`{match.source_namespace}` is not a valid namespace name")
    check_gateway_names(match.gateways or [], f"{path}.gateways", f)  # they replace the VirtualService's here


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

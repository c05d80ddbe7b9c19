"""Semantic checks per kind, after a document decoded into its typed Struct.

The rules follow Istio's own validation (pkg/config/validation: ValidateVirtualService,
ValidateDestinationRule, ValidateServiceEntry, ValidateWorkloadEntry) for the fields Isthmus supports,
plus a few errors for values Istio accepts but Isthmus does not implement yet ("not supported yet").
Every check appends to a `Findings` and carries on, so one submission reports every problem.
"""

from __future__ import annotations

import ipaddress
import re

import msgspec

from proto.config_api import ConfigError
from proto.networking import (
    HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, L4MatchAttributes, RouteDestination, ServiceEntrySpec,
    StringMatch, TCPRoute, VirtualServiceSpec, WorkloadEntrySpec,
)
from services.pilot.validate_resilience import http_resilience
from services.pilot.validate_shaping import http_shaping

RESOLUTIONS = ("NONE", "STATIC", "DNS")
NOT_YET_RESOLUTIONS = ("DNS_ROUND_ROBIN",)
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")
HTTP_PROTOCOLS = {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"}
TLS_PROTOCOLS = {"HTTPS", "TLS"}
PROTOCOLS = HTTP_PROTOCOLS | TLS_PROTOCOLS | {"TCP", "MONGO", "REDIS", "MYSQL"}
IGNORED_HEADER_KEYS = ("uri", "scheme", "method", "authority")  # Istio ignores these keys in `headers`

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$")  # host names are case-insensitive
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")  # RFC 7230 tchars, as Istio checks
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Python's `re` accepts these, RE2 (Envoy's and Istio's engine) rejects them: lookarounds, backreferences,
# atomic groups and possessive quantifiers. Other differences: RE2 writes end-of-text as `\z`, which
# Python rejects (Python's `\Z`); both engines match a route regex against the whole value (fullmatch).
RE2_UNSUPPORTED = re.compile(r"\(\?<?[=!]|\(\?P=|\(\?>|\\[1-9]|[*+?}]\+")


class Findings:
    """Errors and warnings of one document, each with its path, kind and name."""

    def __init__(self, document: int, kind: str = "", name: str = "", namespace: str = "", prefix: str = "") -> None:
        self.document, self.kind, self.name, self.namespace, self.prefix = document, kind, name, namespace, prefix
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigError] = []

    def _make(self, path: str, message: str) -> ConfigError:
        full = f"{self.prefix}.{path}" if self.prefix and path else (self.prefix or path)
        return ConfigError(document=self.document, message=message, path=full, kind=self.kind,
                           name=self.name, namespace=self.namespace)

    def error(self, path: str, message: str) -> None:
        self.errors.append(self._make(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(self._make(path, message))


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_problem(host: str) -> str | None:
    """Why `host` is not a usable host name, or None. Wildcards are Isthmus's "not supported yet"."""
    if not host:
        return "host must not be empty"
    if host.startswith("*") or "*" in host:
        return f"wildcard host `{host}` is not supported yet"
    if len(host) > 255:
        return f"host `{host[:40]}...` is longer than 255 characters"
    for label in host.split("."):
        if len(label) > 63 or not HOST_LABEL.match(label):
            return f"`{host}` is not a valid host name (label `{label}` is not a DNS-1123 label)"
    return None


def check_host(host: str, path: str, f: Findings, allow_ip: bool = False) -> None:
    if allow_ip and is_ip(host):
        return
    problem = host_problem(host)
    if problem:
        f.error(path, problem)


def check_port(number: int, path: str, f: Findings) -> None:
    if not 1 <= number <= 65535:
        f.error(path, f"port number {number} is not in the range 1..65535")


def check_labels(labels: dict[str, str], path: str, f: Findings) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))) or len(name) > 63 \
                or not LABEL_NAME.match(name):
            f.error(f"{path}[{key}]", f"`{key}` is not a valid label key")
        if value and (len(value) > 63 or not LABEL_NAME.match(value)):
            f.error(f"{path}[{key}]", f"`{value}` is not a valid label value")


def check_regex(pattern: str, path: str, f: Findings) -> None:
    if not pattern:
        f.error(path, "regex string match should not be empty")
    elif len(pattern) > 1024:
        f.error(path, "regex is too large, max length allowed is 1024")
    elif RE2_UNSUPPORTED.search(pattern.replace("\\\\", "")):
        f.error(path, f"regex `{pattern}` uses a lookaround, backreference, atomic group or possessive "
                      "quantifier, which RE2 (the regex syntax of Istio) does not support")
    else:
        try:
            re.compile(pattern)
        except re.error as exc:
            f.error(path, f"invalid regex `{pattern}`: {exc}; "
                          "use RE2 syntax (https://github.com/google/re2/wiki/Syntax)")


def check_string_match(sm: StringMatch, path: str, f: Findings, allow_empty_prefix: bool = False,
                       allow_presence: bool = False) -> None:
    """`allow_presence`: a match with no field only asks for presence (headers, queryParams), as in Istio."""
    given = [k for k in ("exact", "prefix", "regex") if getattr(sm, k) is not None]
    if not given and not allow_presence:
        f.error(path, "one of `exact`, `prefix` or `regex` is required")
    elif len(given) > 1:
        f.error(path, f"only one of `exact`, `prefix`, `regex` may be set (found {', '.join(given)})")
    if sm.prefix == "" and not allow_empty_prefix:
        f.error(f"{path}.prefix", "prefix string match should not be empty")
    if sm.regex is not None:
        check_regex(sm.regex, f"{path}.regex", f)


# --- VirtualService -------------------------------------------------------------------------------

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
    if not spec.http and not spec.tcp:
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
        if dest.destination.host == "*":
            f.error(f"{dpath}.destination.host", "invalid destination host *")
        else:
            check_host(dest.destination.host, f"{dpath}.destination.host", f)
        if dest.destination.subset is not None:
            _subset_name(dest.destination.subset, f"{dpath}.destination.subset", f)
        if dest.destination.port is not None:
            check_port(dest.destination.port.number, f"{dpath}.destination.port.number", f)
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


# --- DestinationRule (the rest is in validate_destination.py) ----------------------------------------

def _subset_name(name: str, path: str, f: Findings) -> None:
    if not name:
        f.error(path, "subset name cannot be empty")
    elif len(name) > 63 or not HOST_LABEL.match(name):
        f.error(path, f"subset name `{name}` is invalid (must be a DNS-1123 label)")


# --- ServiceEntry and WorkloadEntry ---------------------------------------------------------------

def _endpoint(ep: WorkloadEntrySpec, path: str, f: Findings, port_names: set[str] | None, ip_only: bool) -> None:
    address = ep.address or ""
    apath = f"{path}.address"
    if not address:
        if ep.network:
            f.warn(apath, f"address is unset with network `{ep.network}`")
        else:
            f.error(apath, "address is required")
    elif address.startswith("unix://"):
        f.error(apath, "unix domain socket endpoints are not supported yet")
    elif not is_ip(address):
        if ip_only:
            f.error(apath, f"endpoint address `{address}` is not a valid IP address (resolution STATIC)")
        elif host_problem(address):
            f.error(apath, f"endpoint address `{address}` is not a valid FQDN or an IP address")
    for name, port in ep.ports.items():
        ppath = f"{path}.ports[{name}]"
        if port_names is not None and name not in port_names:
            f.error(ppath, f"endpoint port `{name}` is not defined by the service entry")
        elif not DNS1123_LABEL.match(name):
            f.error(ppath, f"invalid port name: `{name}`")
        check_port(port, ppath, f)
    check_labels(ep.labels, f"{path}.labels", f)
    if ep.weight is not None and ep.weight < 0:
        f.error(f"{path}.weight", f"weight {ep.weight} < 0")


def workload_entry(spec: WorkloadEntrySpec, f: Findings) -> None:
    _endpoint(spec, "spec", f, None, ip_only=False)


def service_entry(spec: ServiceEntrySpec, f: Findings) -> None:
    if spec.workload_selector is not None and spec.endpoints is not None:
        f.error("spec.workloadSelector", "only one of workloadSelector or endpoints is allowed in a service entry")
    if spec.workload_selector is not None:
        check_labels(spec.workload_selector.labels, "spec.workloadSelector.labels", f)
        if not spec.workload_selector.labels:
            f.warn("spec.workloadSelector", "workload selector without labels selects every workload in the namespace")
    if not spec.hosts:
        f.error("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            f.error(f"spec.hosts[{i}]", "invalid host *")
        else:
            check_host(host, f"spec.hosts[{i}]", f)
    for i, address in enumerate(spec.addresses or []):
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            f.error(f"spec.addresses[{i}]", f"`{address}` is not a valid IP address or CIDR")
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        check_port(port.number, f"{path}.number", f)
        if port.number in numbers:
            f.error(f"{path}.number", f"service entry port {port.number} already defined")
        numbers.add(port.number)
        if not port.name:
            f.error(f"{path}.name", "port name is required")
        elif not DNS1123_LABEL.match(port.name):
            f.error(f"{path}.name", f"invalid port name: `{port.name}`")
        elif port.name in names:
            f.error(f"{path}.name", f"service entry port name `{port.name}` already defined")
        names.add(port.name or "")
        if port.target_port is not None:
            check_port(port.target_port, f"{path}.targetPort", f)
        if port.protocol is not None and port.protocol.upper() not in PROTOCOLS:
            f.error(f"{path}.protocol", f"unsupported protocol `{port.protocol}` "
                                        f"(one of {', '.join(sorted(PROTOCOLS))})")
    if spec.location is not None and spec.location not in LOCATIONS:
        f.error("spec.location", f"unknown location `{spec.location}` (one of {', '.join(LOCATIONS)})")
    resolution = spec.resolution or "NONE"
    if resolution in NOT_YET_RESOLUTIONS:
        f.error("spec.resolution", f"resolution `{resolution}` is not supported yet "
                                   f"(supported: {', '.join(RESOLUTIONS)})")
        return
    if resolution not in RESOLUTIONS:
        f.error("spec.resolution", f"unknown resolution `{resolution}` (one of {', '.join(RESOLUTIONS)})")
        return
    endpoints = spec.endpoints or []
    if resolution == "NONE":
        if endpoints:
            f.error("spec.endpoints", "no endpoints should be provided for resolution type NONE")
        if spec.workload_selector is not None:
            f.warn("spec.workloadSelector", "workloadSelector should not be set when resolution mode is NONE")
    elif resolution == "STATIC" and not endpoints and spec.workload_selector is None:
        f.error("spec.endpoints", "resolution STATIC needs endpoints or a workloadSelector")
    if resolution != "NONE":
        for i, ep in enumerate(endpoints):
            _endpoint(ep, f"spec.endpoints[{i}]", f, names, ip_only=resolution == "STATIC")
        if len(spec.hosts) > 1:
            for port in spec.ports:
                protocol = (port.protocol or "").upper()
                if protocol not in HTTP_PROTOCOLS and protocol not in TLS_PROTOCOLS:
                    f.error("spec.ports", "multiple hosts provided with non-HTTP, non-TLS ports")
                    break


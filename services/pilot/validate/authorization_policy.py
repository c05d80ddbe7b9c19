"""Semantic checks of an AuthorizationPolicy: Istio's ValidateAuthorizationPolicy (pkg/config/validation/
validation.go) and the CRD's rules, with each problem at its path (spec.rules[0].from[1].source.ipBlocks[2]).

    authorization_policy(spec, f)

Errors, as Istio: DENY without `rules`; a `from` or `to` that is an empty list; a `from` without `source`, a
`to` without `operation`, or one that sets nothing; an empty string in any list; a bad IP or CIDR; a port
that is not a number in 0..65535; a condition without `key`, without both `values` and `notValues`, with a
bad value for its key (IPs, ports, `a[b]` keys) or a key Istio does not know; more than 512 rules or 512
`from` entries in a rule (the CRD's maxItems); the selector's rules (checks.check_selector).
Errors where Isthmus supports less than Istio: action CUSTOM and `provider` (external authorization);
targetRef/targetRefs (Gateway API attachment: a selector picks workloads); the condition keys
source.serviceAccount, source.trustDomain and experimental.envoy.filters.*; a path template (`{*}` one
segment, `{**}` the rest: Istio's paths templates) whose operators are not whole segments or whose `{**}` is
not the last segment (Istio allows a little more there: refused, never misread); a path that is not exact or prefix starting with "/", suffix `*abc` or presence `*` (a `*` inside a path:
Istio would match it literally, which is never what was meant).
Warnings, as Istio: a DENY rule that only HTTP attributes can satisfy (it denies all TCP traffic in scope).
"""

from __future__ import annotations

import ipaddress

from proto.security import ALLOW, AUDIT, AUTHZ_ACTIONS, CUSTOM, DENY, AuthorizationPolicySpec, AuthzCondition, \
    AuthzOperation, AuthzRule, AuthzSource
from services.pilot.validate.checks import check_selector
from services.pilot.validate.findings import Findings

MAX_RULES = 512  # the CRD's maxItems of spec.rules
MAX_FROM = 512  # the CRD's maxItems of a rule's `from`

# Condition keys Isthmus evaluates (Istio's names); a key ending in "[" takes a bracketed name: `a[b]`.
CONDITION_KEYS = ("request.headers[", "source.ip", "remote.ip", "source.namespace", "source.principal",
                  "request.auth.principal", "request.auth.audiences", "request.auth.presenter",
                  "request.auth.claims[", "destination.ip", "destination.port", "connection.sni")
_KEYS_HELP = ", ".join(k + "...]" if k.endswith("[") else k for k in CONDITION_KEYS)
# Istio's own refusals of keys (pkg/config/security ValidateAttribute), in its words
_ISTIO_REFUSED = {
    "destination.namespace": "attribute destination.namespace is replaced by the metadata.namespace",
    "destination.name": "deprecated attribute destination.name: only supported in v1alpha1",
    "destination.user": "deprecated attribute destination.user: only supported in v1alpha1",
}
_NOT_SUPPORTED = {
    "source.serviceAccount": "`source.serviceAccount` is not supported by Isthmus yet: use source.principal "
                             "(<trust-domain>/ns/<ns>/sa/<sa>)",
    "source.trustDomain": "`source.trustDomain` is not supported by Isthmus yet: use source.principal with a "
                          "prefix match (<trust-domain>/*)",
}

_SOURCE_FIELDS = (("principals", "principals"), ("not_principals", "notPrincipals"),
                  ("request_principals", "requestPrincipals"), ("not_request_principals", "notRequestPrincipals"),
                  ("namespaces", "namespaces"), ("not_namespaces", "notNamespaces"),
                  ("ip_blocks", "ipBlocks"), ("not_ip_blocks", "notIpBlocks"),
                  ("remote_ip_blocks", "remoteIpBlocks"), ("not_remote_ip_blocks", "notRemoteIpBlocks"))
_OPERATION_FIELDS = (("hosts", "hosts"), ("not_hosts", "notHosts"), ("ports", "ports"), ("not_ports", "notPorts"),
                     ("methods", "methods"), ("not_methods", "notMethods"), ("paths", "paths"),
                     ("not_paths", "notPaths"))
_IP_FIELDS = ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")
# a source that sets one of these can match TCP traffic (Istio's tcpRulesInFrom)
_TCP_SOURCE = ("principals", "not_principals", "namespaces", "not_namespaces", "ip_blocks", "not_ip_blocks",
               "remote_ip_blocks", "not_remote_ip_blocks")


def ip_problem(value: str) -> str | None:
    """Why `value` is not an IP address or CIDR (Go's netip.ParseAddr / ParsePrefix), or None."""
    try:
        if "/" in value:
            # netip.ParsePrefix takes only `/<bits>`; Python's ip_network would also read a netmask
            # (`10.1.2.3/0.0.0.0` is /0: everyone) or a hostmask, which Istio refuses
            bits = value.rpartition("/")[2]
            if not (bits.isascii() and bits.isdigit()) or (len(bits) > 1 and bits[0] == "0"):
                raise ValueError(value)
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"bad CIDR range `{value}`" if "/" in value else f"bad IP address `{value}`"
    return None


def port_problem(value: str | int) -> str | None:
    """Why `value` is not a port (a decimal in 0..65535, as Istio's ValidatePorts), or None."""
    text = str(value)
    if isinstance(value, bool) or not text.isascii() or not text.isdigit() or int(text) > 65535:
        return f"bad port `{value}`: must be a number in 0..65535"
    return None


def path_problem(path: str) -> str | None:
    """Why `path` is not one of Istio's path forms Isthmus matches, or None."""
    if "{*}" in path or "{**}" in path:
        return template_problem(path)
    if path == "*" or (path.startswith("*") and "*" not in path[1:]):
        return None  # presence, or suffix match
    if "*" in path[:-1]:
        return (f"`{path}`: a `*` is allowed only at the start (suffix match `*abc`) or the end (prefix match "
                "`/abc*`) of a path, or alone (any path)")
    if not path.startswith("/"):
        return f"`{path}` does not start with `/`: an exact or prefix path match needs one"
    return None


def template_problem(path: str) -> str | None:
    """Why a path template (istio.io authorization-policy `paths`: `{*}` matches one segment, `{**}` the rest of
    the path) is not one the sidecar matches (proxy/inbound/authz/paths.py), or None."""
    if not path.startswith("/"):
        return f"`{path}`: a path template must start with `/`"
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment in ("{*}", "{**}"):
            if segment == "{**}" and index != len(segments) - 1:
                return f"`{path}`: `{{**}}` must be the last segment of a path template"
        elif "*" in segment or "{" in segment or "}" in segment:
            return (f"`{path}`: in a path template each operator is a whole segment, `{{*}}` or `{{**}}`, and no "
                    "other `*`, `{` or `}` may appear")
    return None


def authorization_policy(spec: AuthorizationPolicySpec, f: Findings) -> None:
    for field, value in (("targetRef", spec.target_ref), ("targetRefs", spec.target_refs)):
        if value is not None:
            f.error(f"spec.{field}", "targetRef/targetRefs (Gateway API attachment) are not supported by Isthmus: "
                                     "a `selector.matchLabels` picks the workloads (or none: the whole namespace)")
    check_selector(spec.selector, f)
    action = spec.action or ALLOW
    if action == CUSTOM:
        f.error("spec.action", "CUSTOM (external authorization) is not supported by Isthmus")
    elif action not in AUTHZ_ACTIONS:
        f.error("spec.action", f"unknown action `{action}` (one of {ALLOW}, {DENY}, {AUDIT})")
    if spec.provider is not None:
        f.error("spec.provider", "CUSTOM (external authorization) is not supported by Isthmus: `provider` "
                                 "belongs to the CUSTOM action")
    if action == DENY and not spec.rules:  # `rules: []` decodes as none in Istio (protobuf): the same
        f.error("spec.rules", "DENY action without `rules` is meaningless as it will never be triggered, add an "
                              "empty rule `{}` if you want it be triggered for every request")
    rules = spec.rules or []
    if len(rules) > MAX_RULES:
        f.error("spec.rules", f"{len(rules)} rules, more than {MAX_RULES}")
        return
    for i, rule in enumerate(rules):
        _rule(rule, f"spec.rules[{i}]", action, f)


def _rule(rule: AuthzRule, path: str, action: str, f: Findings) -> None:
    tcp_from = tcp_to = from_exists = to_exists = False
    if rule.from_ is not None and not rule.from_:
        f.error(f"{path}.from", "`from` must not be empty (leave it out to match any source)")
    if rule.from_ is not None and len(rule.from_) > MAX_FROM:
        f.error(f"{path}.from", f"{len(rule.from_)} entries, more than {MAX_FROM}")
        return
    for j, entry in enumerate(rule.from_ or []):
        here = f"{path}.from[{j}]"
        if entry.source is None:
            f.error(f"{here}.source", "`from.source` must not be nil")
            continue
        from_exists = True
        tcp_from = _source(entry.source, f"{here}.source", f) or tcp_from
    if rule.to is not None and not rule.to:
        f.error(f"{path}.to", "`to` must not be empty (leave it out to match any operation)")
    for j, entry in enumerate(rule.to or []):
        here = f"{path}.to[{j}]"
        if entry.operation is None:
            f.error(f"{here}.operation", "`to.operation` must not be nil")
            continue
        to_exists = True
        tcp_to = _operation(entry.operation, f"{here}.operation", f) or tcp_to
    for j, condition in enumerate(rule.when or []):
        _condition(condition, f"{path}.when[{j}]", f)
    if action == DENY and ((from_exists and not to_exists and not tcp_from) or (to_exists and not tcp_to)):
        f.warn(path, "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the "
                     "use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port")


def _empty_values(values: list[str | int], path: str, f: Findings) -> None:
    for k, value in enumerate(values):
        if value == "":
            f.error(f"{path}[{k}]", "empty value not allowed")


def _source(source: AuthzSource, path: str, f: Findings) -> bool:
    """Checks one `from.source`; returns whether it can match TCP traffic."""
    given = [(name, getattr(source, attr)) for attr, name in _SOURCE_FIELDS if getattr(source, attr)]
    if not given:
        f.error(path, "`from.source` must not be empty")
    for name, values in given:
        _empty_values(values, f"{path}.{name}", f)
        if name in _IP_FIELDS:
            for k, value in enumerate(values):
                problem = ip_problem(value) if value else None
                if problem:
                    f.error(f"{path}.{name}[{k}]", problem)
    return any(getattr(source, attr) is not None for attr in _TCP_SOURCE)


def _operation(op: AuthzOperation, path: str, f: Findings) -> bool:
    """Checks one `to.operation`; returns whether it can match TCP traffic (it names ports)."""
    given = [(name, getattr(op, attr)) for attr, name in _OPERATION_FIELDS if getattr(op, attr)]
    if not given:
        f.error(path, "`to.operation` must not be empty")
    for name, values in given:
        _empty_values(values, f"{path}.{name}", f)
        for k, value in enumerate(values):
            problem = None
            if name in ("ports", "notPorts"):
                problem = port_problem(value)
            elif name in ("paths", "notPaths") and value:
                problem = path_problem(str(value))
            if problem:
                f.error(f"{path}.{name}[{k}]", problem)
    return op.ports is not None or op.not_ports is not None


def condition_key_problem(key: str) -> str | None:
    """Why `key` is not a condition key Isthmus evaluates, or None."""
    if key in _ISTIO_REFUSED:
        return _ISTIO_REFUSED[key]
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    if key in _NOT_SUPPORTED:
        return _NOT_SUPPORTED[key]
    if key.startswith("experimental.envoy.filters."):
        return (f"`{key}`: experimental.envoy.filters.* keys read Envoy filter metadata, which the Isthmus "
                "sidecar does not have")
    for known in CONDITION_KEYS:
        if known.endswith("["):
            if key.startswith(known):
                return _map_key_problem(key)
            if key.startswith(known[:-1]):  # as Istio's hasPrefix: `request.headers` alone is a bad a[b]
                return f"bad key `{key}`: should have format a[b]"
        elif key == known:
            return None
    return f"unknown attribute `{key}`; supported keys: {_KEYS_HELP}"


def _map_key_problem(key: str) -> str | None:
    """`a[b]` (request.headers[x], request.auth.claims[groups]) and nested claims `a[b][c]`, as Istio's
    validateMapKey plus the nesting Istio reads for claims."""
    open_at = key.find("[")
    inner = key[open_at:] if open_at > 0 else ""
    names = inner[1:-1].split("][") if inner.endswith("]") and len(inner) > 2 else []
    if not names or any(not n or "[" in n or "]" in n for n in names):
        return f"bad key `{key}`: should have format a[b]"
    if len(names) > 1 and not key.startswith("request.auth.claims["):
        return f"bad key `{key}`: only request.auth.claims takes nested names (claims[a][b])"
    if key.startswith("request.headers[:"):  # Envoy reads its pseudo-headers here; HTTP/1 heads carry none, so a
        # rule on one would never match: a DENY would pass everything
        return (f"`{key}`: pseudo-headers are not supported in request.headers yet; use `hosts`, `methods` or "
                "`paths` in `to.operation`")
    return None


def _condition(condition: AuthzCondition, path: str, f: Findings) -> None:
    key = condition.key
    if key == "":
        f.error(f"{path}.key", "`key` must not be empty")
        return
    if not condition.values and not condition.not_values:
        f.error(path, f"at least one of `values` or `notValues` must be set for key {key}")
        return
    problem = condition_key_problem(key)
    if problem:
        f.error(f"{path}.key", problem)
        return
    for name, values in (("values", condition.values or []), ("notValues", condition.not_values or [])):
        _empty_values(values, f"{path}.{name}", f)
        for k, value in enumerate(values):
            problem = None
            if not value:
                continue
            if key in ("source.ip", "remote.ip", "destination.ip"):
                problem = ip_problem(value)
            elif key == "destination.port":
                problem = port_problem(value)
            if problem:
                f.error(f"{path}.{name}[{k}]", f"invalid value for key {key}: {problem}")

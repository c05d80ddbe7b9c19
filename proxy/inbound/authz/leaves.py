"""One predicate per Source / Operation field and `when` key: what istio's generators
(pilot/pkg/security/authz/model/generator.go) make of a list of values, as Envoy's RBAC matchers
(envoy source/extensions/filters/common/rbac/matchers.cc) then evaluate it.

    leaf(key, values, for_tcp) -> Leaf       the values ORed; raises HttpOnly on TCP for an HTTP-only key,
                                             Unusable for a key or value Istio cannot generate
    Leaf = (downstream, head, path) -> bool  head is None and path "" on TCP (HTTP-only leaves never run there)

Keys are Istio's attribute names; the fields of a rule map to them (model.go): principals -> source.principal,
namespaces -> source.namespace, ipBlocks -> source.ip, remoteIpBlocks -> remote.ip, requestPrincipals ->
request.auth.principal, hosts -> :authority, methods -> :method, paths -> path, ports -> destination.port.

Peer identity (principals, namespaces, source.principal, source.namespace) is Envoy's `authenticated`
matcher: a connection without TLS has none, so these never match a plaintext caller (istio/istio#21259),
and their `not` forms always do (`Not(authenticated)` is true: istio security advisory ISTIO-SECURITY-2021-003).
A request without a verified JWT (head.auth None) has no request.auth.* metadata: those never match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from proxy.core.downstream import Downstream, RequestAuth
from proxy.core.request import RequestHead, header_value
from proxy.inbound.authz.addresses import cidr_matcher
from proxy.inbound.authz.paths import path_matcher
from proxy.inbound.authz.strings import exact_values, values_matcher

Leaf = Callable[[Downstream, "RequestHead | None", str], bool]

HTTP_ONLY_KEYS = (":authority", ":method", "path", "request.auth.principal", "request.auth.audiences",
                  "request.auth.presenter")


class HttpOnly(Exception):
    """An HTTP-only attribute compiled for a TCP filter chain (istio: `"<key>" is HTTP only`)."""


class Unusable(Exception):
    """A key or value Istio cannot generate (pilot's validation refuses these: a defence in depth)."""


# --- peer identity ---------------------------------------------------------------------------------
def _principal(values: Sequence[str]) -> Leaf:
    # srcPrincipalGenerator: StringMatcherWithPrefix(v, "spiffe://") on the URI SAN; our principal lacks the
    # scheme, which `*abc` (regex spiffe://.*abc) and `abc*` (prefix spiffe://abc) only ever add back.
    exact = exact_values(values)
    if exact is not None:  # the usual shape: one call per request, None (plaintext) is in no set
        return lambda ds, head, path: ds.principal in exact
    match = values_matcher(values)
    return lambda ds, head, path: ds.principal is not None and match(ds.principal)


def namespace_glob(value: str) -> Callable[[str], bool]:
    """istio's regex `.*/ns/<value, * as .*>/.*` on a principal, matched in linear time: its pieces in order,
    each at its leftmost place (what leaves the most room for the rest). Python's `re` backtracks on such a
    pattern (RE2, Envoy's engine, does not): `a*a*a*a*a*a*a*a*a*b` against a 30-letter namespace took 0.2 s
    per request, growing with every letter."""
    parts = value.split("*")
    first, middles, last = "/ns/" + parts[0], tuple(parts[1:-1]), parts[-1] + "/"

    def matches(principal: str) -> bool:
        at = principal.find(first)
        if at < 0:
            return False
        at += len(first)
        for piece in middles:
            at = principal.find(piece, at)
            if at < 0:
                return False
            at += len(piece)
        return principal.find(last, at) >= 0

    return matches


def _namespace(values: Sequence[str]) -> Leaf:
    # srcNamespaceGenerator: the regex `.*/ns/<ns, * as .*>/.*` on the URI SAN; exact: the substring.
    needles = tuple(f"/ns/{v}/" for v in values if "*" not in v)
    patterns = tuple(namespace_glob(v) for v in values if "*" in v)

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        p = ds.principal
        if p is None:
            return False
        for needle in needles:
            if needle in p:
                return True
        return any(pattern(p) for pattern in patterns)

    return matches


# --- addresses, port, SNI (connection attributes: HTTP and TCP) -------------------------------------
def _source_ip(values: Sequence[str]) -> Leaf:
    match = cidr_matcher(values)
    # remote.ip / remoteIpBlocks: the original client from X-Forwarded-For only with numTrustedProxies, which
    # this sidecar does not take: so the direct peer, as Envoy's remote_ip without trusted hops.
    return lambda ds, head, path: match(ds.source_ip)


def _destination_ip(values: Sequence[str]) -> Leaf:
    match = cidr_matcher(values)
    return lambda ds, head, path: match(ds.destination_ip)


def _port(values: Sequence[str | int]) -> Leaf:
    ports: set[int] = set()
    for v in values:
        try:
            port = int(v)
        except ValueError:
            raise Unusable(f"invalid port {v}") from None
        if not 0 <= port <= 65535:
            raise Unusable(f"invalid port {v}")
        ports.add(port)
    frozen = frozenset(ports)
    return lambda ds, head, path: ds.destination_port in frozen


def _sni(values: Sequence[str]) -> Leaf:
    match = values_matcher(values)
    return lambda ds, head, path: match(ds.sni)


# --- HTTP request attributes -------------------------------------------------------------------------
def _host(values: Sequence[str]) -> Leaf:
    # HostMatcher on :authority, case-insensitive, the port included as sent (`example.com:*` for any port)
    match = values_matcher(values, ignore_case=True, presence_matches_empty=True)

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        assert head is not None
        raw = head.header(b"host")
        return match(raw.decode("latin-1") if raw is not None else head.host)

    return matches


def _method(values: Sequence[str]) -> Leaf:
    exact = exact_values(values)
    if exact is not None:
        return lambda ds, head, path: head.method in exact  # type: ignore[union-attr]
    match = values_matcher(values, presence_matches_empty=True)
    return lambda ds, head, path: match(head.method)  # type: ignore[union-attr]


def _path(values: Sequence[str]) -> Leaf:
    exact = exact_values(values)
    if exact is not None and not any("{" in v for v in values):
        return lambda ds, head, path: path in exact
    if len(values) == 1 and values[0].endswith("*") and "*" not in values[0][:-1] and "{" not in values[0]:
        prefix = values[0][:-1]  # `/api/*`, the most common path value
        return lambda ds, head, path: path.startswith(prefix)
    match = path_matcher(values)
    return lambda ds, head, path: match(path)


def _header(name: str, values: Sequence[str]) -> Leaf:
    # matcher.HeaderMatcher: `*` is present_match, else exact / prefix / suffix, case-sensitive on the value
    key = name.lower().encode("latin-1")
    match = values_matcher(values, presence_matches_empty=True)
    exact = exact_values(values)
    if exact is not None:
        return lambda ds, head, path: header_value(head, key) in exact  # type: ignore[arg-type]

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        assert head is not None
        value = header_value(head, key)
        return value is not None and match(value)

    return matches


# --- request.auth.* (the verified JWT: Envoy's jwt_authn payload metadata) --------------------------------
def _claim_strings(value: Any) -> list[str]:
    """A claim as Envoy's metadata matchers see it: a string, or the strings of a list; nothing else matches."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _iss_sub(auth: RequestAuth) -> tuple[str | None, str | None]:
    iss, sub = auth.claims.get("iss"), auth.claims.get("sub")
    if iss is None and sub is None and "/" in auth.principal:  # claims not kept: the principal is <iss>/<sub>
        iss, _, sub = auth.principal.rpartition("/")
    return (iss if isinstance(iss, str) else None), (sub if isinstance(sub, str) else None)


def _request_principal(values: Sequence[str]) -> Leaf:
    # requestPrincipalGenerator: per value an (iss, sub) pair of matchers, split at the LAST "/" (an issuer
    # may be a URL); `*` anywhere-any is the regex .+ (non-empty).
    any_ = values_matcher(["*"])

    def exact(text: str) -> Callable[[str], bool]:
        return lambda s: s == text

    pairs: list[tuple[Callable[[str], bool], Callable[[str], bool]]] = []
    for value in values:
        iss, found, sub = value.rpartition("/")
        if not found:
            iss, sub = value, ""
        if value == "*":
            pairs.append((any_, any_))
        elif value.startswith("*"):  # `*/sub`, `*suffix-of-iss/sub`; without "/": any issuer, sub suffix
            pairs.append((any_ if iss == "*" else values_matcher([iss]), exact(sub)) if found
                         else (any_, values_matcher([value])))
        elif value.endswith("*"):  # `iss/*`, `iss/sub-prefix*`; without "/": issuer prefix, any sub
            pairs.append((exact(iss), any_ if sub == "*" else values_matcher([sub])) if found
                         else (values_matcher([value]), any_))
        else:
            pairs.append((exact(iss), exact(sub)))
    frozen = tuple(pairs)

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        auth = head.auth  # type: ignore[union-attr]
        if auth is None:
            return False
        iss, sub = _iss_sub(auth)
        if iss is None or sub is None:
            return False
        return any(mi(iss) and ms(sub) for mi, ms in frozen)

    return matches


def _audiences(values: Sequence[str]) -> Leaf:
    match = values_matcher(values)

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        auth = head.auth  # type: ignore[union-attr]
        return auth is not None and any(match(a) for a in auth.audiences)

    return matches


def _presenter(values: Sequence[str]) -> Leaf:
    match = values_matcher(values)

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        auth = head.auth  # type: ignore[union-attr]
        return auth is not None and auth.presenter != "" and match(auth.presenter)

    return matches


def claim_path(key: str) -> list[str]:
    """`request.auth.claims[a][b]` -> ["a", "b"]; `[a.b]` is the one claim "a.b" (istio extractNameInNestedBrackets)."""
    rest = key[len("request.auth.claims"):]
    names = re.findall(r"\[([^\[\]]*)\]", rest)
    if not names or "".join(f"[{n}]" for n in names) != rest:
        if rest.startswith("[") and rest.endswith("]"):
            return [rest[1:-1]]
        raise Unusable(f"expecting format [<NAME>], but found {rest}")
    return names


def _claims(key: str, values: Sequence[str]) -> Leaf:
    names = tuple(claim_path(key))
    match = values_matcher(values)

    def matches(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        auth = head.auth  # type: ignore[union-attr]
        if auth is None:
            return False
        node: Any = auth.claims
        for name in names:
            if not isinstance(node, dict) or name not in node:
                return False
            node = node[name]
        return any(match(v) for v in _claim_strings(node))

    return matches


def leaf(key: str, values: Sequence[Any], for_tcp: bool) -> Leaf:
    """The predicate for `values` (ORed) of attribute `key`. HttpOnly / Unusable as the module says."""
    simple = {"source.principal": _principal, "source.namespace": _namespace, "source.ip": _source_ip,
              "remote.ip": _source_ip, "destination.ip": _destination_ip, "destination.port": _port,
              "connection.sni": _sni, ":authority": _host, ":method": _method, "path": _path,
              "request.auth.principal": _request_principal, "request.auth.audiences": _audiences,
              "request.auth.presenter": _presenter}.get(key)
    http_only = key in HTTP_ONLY_KEYS or key.startswith(("request.headers", "request.auth.claims"))
    if http_only and for_tcp:
        raise HttpOnly(f'"{key}" is HTTP only')
    try:
        if simple is not None:
            return simple(values)  # type: ignore[operator]
        if key.startswith("request.headers"):
            name = key[len("request.headers"):]
            if not (name.startswith("[") and name.endswith("]")):
                raise Unusable(f"expecting format [<NAME>], but found {name}")
            return _header(name[1:-1], values)
        if key.startswith("request.auth.claims"):
            return _claims(key, values)
    except ValueError as exc:
        raise Unusable(str(exc)) from exc
    raise Unusable(f"unknown attribute {key}")

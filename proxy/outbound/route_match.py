"""Route matching, compiled once per RouteConfig: which rule of a host's routes a request takes.

Semantics follow Istio's translation to Envoy route matches:
- uri `exact` and `regex` match the path without its query string (Envoy `path` and `safe_regex`);
  uri `prefix` matches the beginning of the full `:path` (Envoy `prefix`), so `/a` matches `/a?x=1`;
- regexes match the whole value (RE2 full match in Envoy; `re.fullmatch` here), compiled once;
- header names are lower-case; several values of one header are joined with "," before matching
  (as Envoy does); a missing header never matches;
- `method` matches the request method, `port` the port the request was sent to, `scheme` "http" (the
  sidecar's outbound listener speaks plain HTTP), `authority` the Host header value as sent (Envoy's
  `:authority`, so it carries the port when the client wrote one);
- `ignoreUriCase` makes uri `exact` and `prefix` case-insensitive; `regex` stays case-sensitive (Istio);
- `queryParams` match the first value of each named parameter, undecoded; a StringMatch with no field
  (`key: {}`), like a header's, only requires the parameter (header) to be present;
- `withoutHeaders`: none of the listed header conditions may hold (a missing header holds none);
- `sourceLabels` must all be among the calling proxy's labels, `sourceNamespace` be its namespace;
- within a match every condition must hold; a rule with several matches needs any one of them; a rule
  without matches takes every request. The first rule that matches wins.
A rule picks one of its destinations by weight from a cumulative table (bisect), not per-request math.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from random import random

from proto.xds import HttpRule, RouteConfig, RouteMatch, StringMatch, TcpRule, WeightedDestination
from proxy.outbound import headers as header_ops
from proxy.outbound import cors, mirror, redirect, rewrite
from proxy.outbound.policy import compile_policy
from proxy.outbound.target import RequestHead, Target

Matcher = Callable[[str], bool]
SCHEME = "http"  # what a sidecar's outbound listener receives


class Caller:
    """The workload whose proxy routes the request (sourceLabels, sourceNamespace)."""

    __slots__ = ("labels", "namespace")

    def __init__(self, labels: dict[str, str] | None = None, namespace: str = "") -> None:
        self.labels = labels or {}
        self.namespace = namespace


NO_CALLER = Caller()


def _present(value: str) -> bool:
    return True


def string_matcher(sm: StringMatch, ignore_case: bool = False, allow_presence: bool = False) -> Matcher:
    """Raises ValueError for an empty match (unless `allow_presence`) or a regex that does not compile."""
    if sm.exact is not None:
        exact = sm.exact
        if ignore_case:
            folded = exact.lower()
            return lambda value: value.lower() == folded
        return lambda value: value == exact
    if sm.prefix is not None:
        prefix = sm.prefix
        if ignore_case:
            folded = prefix.lower()
            return lambda value: value.lower().startswith(folded)
        return lambda value: value.startswith(prefix)
    if sm.regex is not None:
        try:
            pattern = re.compile(sm.regex)
        except re.error as exc:
            raise ValueError(f"regex {sm.regex!r} does not compile: {exc}") from exc
        return lambda value: pattern.fullmatch(value) is not None
    if allow_presence:
        return _present
    raise ValueError("a string match needs one of exact, prefix or regex")


def header_value(head: RequestHead, name: bytes) -> str | None:
    found: bytes | None = None
    for key, value in head.headers:
        if key == name:
            found = value if found is None else found + b"," + value
    return None if found is None else found.decode("latin-1")


def path_without_query(path: str) -> str:
    cut = path.find("?")
    if cut >= 0:
        path = path[:cut]
    cut = path.find("#")
    return path if cut < 0 else path[:cut]


def query_value(path: str, name: str) -> str | None:
    """First value of query parameter `name` in an origin-form path, undecoded; "" for a bare `?name`."""
    cut = path.find("?")
    if cut < 0:
        return None
    query = path[cut + 1:]
    frag = query.find("#")
    if frag >= 0:
        query = query[:frag]
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


def _headers(headers: dict[str, StringMatch]) -> tuple[tuple[bytes, Matcher], ...]:
    return tuple((name.lower().encode("latin-1"), string_matcher(sm, allow_presence=True))
                 for name, sm in headers.items())


class CompiledMatch:
    __slots__ = ("uri", "uri_full_path", "method", "headers", "port", "scheme", "authority", "query",
                 "without", "source_labels", "source_namespace")

    def __init__(self, match: RouteMatch) -> None:
        self.uri = string_matcher(match.uri, ignore_case=match.ignore_uri_case) if match.uri is not None else None
        self.uri_full_path = match.uri is not None and match.uri.prefix is not None
        self.method = string_matcher(match.method) if match.method is not None else None
        self.headers = _headers(match.headers)
        self.port = match.port
        self.scheme = string_matcher(match.scheme) if match.scheme is not None else None
        self.authority = string_matcher(match.authority) if match.authority is not None else None
        self.query = tuple((name, string_matcher(sm, allow_presence=True))
                           for name, sm in match.query_params.items())
        self.without = _headers(match.without_headers)
        self.source_labels = tuple(match.source_labels.items())
        self.source_namespace = match.source_namespace

    def matches(self, head: RequestHead, path: str, caller: Caller = NO_CALLER) -> bool:
        """`path`: head.path without its query string (computed once per request by the caller)."""
        if self.port is not None and head.port != self.port:
            return False
        if self.method is not None and not self.method(head.method):
            return False
        if self.uri is not None and not self.uri(head.path if self.uri_full_path else path):
            return False
        if self.scheme is not None and not self.scheme(SCHEME):
            return False
        if self.authority is not None:
            value = header_value(head, b"host")
            if value is None or not self.authority(value):
                return False
        for name, matcher in self.headers:
            value = header_value(head, name)
            if value is None or not matcher(value):
                return False
        for name, matcher in self.without:
            value = header_value(head, name)
            if value is not None and matcher(value):
                return False
        for qname, matcher in self.query:
            qvalue = query_value(head.path, qname)
            if qvalue is None or not matcher(qvalue):
                return False
        if self.source_labels:
            labels = caller.labels
            for key, want in self.source_labels:
                if labels.get(key) != want:
                    return False
        if self.source_namespace is not None and caller.namespace != self.source_namespace:
            return False
        return True


def cumulative_weights(destinations: list[WeightedDestination]) -> tuple[list[int], int]:
    """Running sums of the destinations' weights (a lone destination takes everything); raises ValueError."""
    weights = [1 if len(destinations) == 1 else d.weight for d in destinations]
    if any(w < 0 for w in weights):
        raise ValueError(f"negative destination weight in {weights}")
    cumulative: list[int] = []
    running = 0
    for weight in weights:
        running += weight
        cumulative.append(running)
    if running <= 0:
        raise ValueError("destination weights sum to 0")
    return cumulative, running


class CompiledTcpRule:
    """A VirtualService tcp route: the port and the caller are all a connection can be matched on."""

    __slots__ = ("matches", "destinations", "cumulative", "total")

    def __init__(self, rule: TcpRule) -> None:
        if not rule.destinations:
            raise ValueError("a tcp route needs at least one destination")
        self.matches = tuple(rule.matches)
        self.destinations = tuple(rule.destinations)
        self.cumulative, self.total = cumulative_weights(rule.destinations)

    def applies(self, port: int, caller: Caller) -> bool:
        if not self.matches:
            return True
        for m in self.matches:
            if ((m.port is None or m.port == port)
                    and all(caller.labels.get(k) == v for k, v in m.source_labels.items())
                    and (m.source_namespace is None or m.source_namespace == caller.namespace)):
                return True
        return False

    def pick(self) -> WeightedDestination:
        if len(self.destinations) == 1:
            return self.destinations[0]
        return self.destinations[bisect_right(self.cumulative, random() * self.total)]


class CompiledRule:
    __slots__ = ("name", "matches", "destinations", "cumulative", "total", "policy", "local", "policies")

    def __init__(self, rule: HttpRule) -> None:
        local = redirect.from_rule(rule)  # directResponse or redirect: no destinations
        if not rule.destinations and local is None:
            raise ValueError("a rule needs at least one destination")
        self.name = rule.name
        self.matches = tuple(CompiledMatch(m) for m in rule.matches)
        # timeout, retries, fault, local answer, rewrite, headers, cors, mirrors (proxy/outbound/policy.py)
        rewriter = rewrite.from_rule(rule, self.matches)
        cors_policy, mirrors = cors.from_rule(rule), mirror.from_rule(rule)
        self.policy = compile_policy(rule, local, rewriter, header_ops.edits(None, rule.headers), cors_policy,
                                     mirrors)
        # With destination-level headers, one policy per destination (the router looks it up); else None.
        self.policies = None
        if any(d.headers is not None for d in rule.destinations):
            self.policies = tuple(compile_policy(rule, None, rewriter, header_ops.edits(d.headers, rule.headers),
                                                 cors_policy, mirrors)
                                  for d in rule.destinations)
        # The Target the router returns for a rule answered by the sidecar itself (no endpoint).
        self.local = Target("", 0, "-", policy=self.policy) if local is not None else None
        if local is not None:
            self.destinations: tuple[WeightedDestination, ...] = ()
            self.cumulative: list[int] = []
            self.total = 0
            return
        self.destinations = tuple(rule.destinations)
        self.cumulative, self.total = cumulative_weights(rule.destinations)

    def applies(self, head: RequestHead, path: str, caller: Caller = NO_CALLER) -> bool:
        if not self.matches:
            return True
        for match in self.matches:
            if match.matches(head, path, caller):
                return True
        return False

    def policy_for(self, dest: WeightedDestination) -> object:
        """The RoutePolicy of a destination with its own headers (only when `policies` is set)."""
        for destination, policy in zip(self.destinations, self.policies):  # type: ignore[arg-type]
            if destination is dest:
                return policy
        return self.policy

    def pick(self) -> WeightedDestination:
        if len(self.destinations) == 1:
            return self.destinations[0]
        return self.destinations[bisect_right(self.cumulative, random() * self.total)]


class CompiledRoute:
    __slots__ = ("host", "version", "source", "rules", "tcp")

    def __init__(self, route: RouteConfig) -> None:
        self.host = route.host
        self.version = route.version
        self.source = route.source
        rules = []
        for i, rule in enumerate(route.rules):
            try:
                rules.append(CompiledRule(rule))
            except ValueError as exc:
                raise ValueError(f"rule {rule.name or i}: {exc}") from exc
        self.rules = tuple(rules)
        tcp = []
        for i, tcp_rule in enumerate(route.tcp):
            try:
                tcp.append(CompiledTcpRule(tcp_rule))
            except ValueError as exc:
                raise ValueError(f"tcp route {i}: {exc}") from exc
        self.tcp = tuple(tcp)

    def tcp_rule_for(self, port: int, caller: Caller = NO_CALLER) -> CompiledTcpRule | None:
        for rule in self.tcp:
            if rule.applies(port, caller):
                return rule
        return None

    def rule_for(self, head: RequestHead, path: str, caller: Caller = NO_CALLER) -> CompiledRule | None:
        for rule in self.rules:
            if rule.applies(head, path, caller):
                return rule
        return None

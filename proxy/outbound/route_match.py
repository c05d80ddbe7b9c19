"""Route matching, compiled once per RouteConfig: which rule of a host's routes a request takes.

Semantics follow Istio's translation to Envoy route matches:
- uri `exact` and `regex` match the path without its query string (Envoy `path` and `safe_regex`);
  uri `prefix` matches the beginning of the full `:path` (Envoy `prefix`), so `/a` matches `/a?x=1`;
- regexes match the whole value (RE2 full match in Envoy; `re.fullmatch` here), compiled once;
- header names are lower-case; several values of one header are joined with "," before matching
  (as Envoy does); a missing header never matches;
- `method` matches the request method, `port` the port the request was sent to;
- within a match every condition must hold; a rule with several matches needs any one of them; a rule
  without matches takes every request. The first rule that matches wins.
A rule picks one of its destinations by weight from a cumulative table (bisect), not per-request math.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from random import random

from proto.xds import HttpRule, RouteConfig, RouteMatch, StringMatch, WeightedDestination
from proxy.outbound.target import RequestHead

Matcher = Callable[[str], bool]


def string_matcher(sm: StringMatch) -> Matcher:
    """Raises ValueError for an empty match or a regex that does not compile."""
    if sm.exact is not None:
        exact = sm.exact
        return lambda value: value == exact
    if sm.prefix is not None:
        prefix = sm.prefix
        return lambda value: value.startswith(prefix)
    if sm.regex is not None:
        try:
            pattern = re.compile(sm.regex)
        except re.error as exc:
            raise ValueError(f"regex {sm.regex!r} does not compile: {exc}") from exc
        return lambda value: pattern.fullmatch(value) is not None
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


class CompiledMatch:
    __slots__ = ("uri", "uri_full_path", "method", "headers", "port")

    def __init__(self, match: RouteMatch) -> None:
        self.uri = string_matcher(match.uri) if match.uri is not None else None
        self.uri_full_path = match.uri is not None and match.uri.prefix is not None
        self.method = string_matcher(match.method) if match.method is not None else None
        self.headers = tuple((name.lower().encode("latin-1"), string_matcher(sm))
                             for name, sm in match.headers.items())
        self.port = match.port

    def matches(self, head: RequestHead, path: str) -> bool:
        """`path`: head.path without its query string (computed once per request by the caller)."""
        if self.port is not None and head.port != self.port:
            return False
        if self.method is not None and not self.method(head.method):
            return False
        if self.uri is not None and not self.uri(head.path if self.uri_full_path else path):
            return False
        for name, matcher in self.headers:
            value = header_value(head, name)
            if value is None or not matcher(value):
                return False
        return True


class CompiledRule:
    __slots__ = ("name", "matches", "destinations", "cumulative", "total")

    def __init__(self, rule: HttpRule) -> None:
        if not rule.destinations:
            raise ValueError("a rule needs at least one destination")
        self.name = rule.name
        self.matches = tuple(CompiledMatch(m) for m in rule.matches)
        self.destinations = tuple(rule.destinations)
        weights = [1 if len(rule.destinations) == 1 else d.weight for d in rule.destinations]
        if any(w < 0 for w in weights):
            raise ValueError(f"negative destination weight in {weights}")
        self.cumulative: list[int] = []
        running = 0
        for weight in weights:
            running += weight
            self.cumulative.append(running)
        self.total = running
        if self.total <= 0:
            raise ValueError("destination weights sum to 0")

    def applies(self, head: RequestHead, path: str) -> bool:
        if not self.matches:
            return True
        for match in self.matches:
            if match.matches(head, path):
                return True
        return False

    def pick(self) -> WeightedDestination:
        if len(self.destinations) == 1:
            return self.destinations[0]
        return self.destinations[bisect_right(self.cumulative, random() * self.total)]


class CompiledRoute:
    __slots__ = ("host", "version", "source", "rules")

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

    def rule_for(self, head: RequestHead, path: str) -> CompiledRule | None:
        for rule in self.rules:
            if rule.applies(head, path):
                return rule
        return None

"""IST0130 and IST0131: VirtualService rules that can never match, and matches that an earlier rule already
takes (a duplicate match, or an HTTP uri prefix an earlier prefix covers with the same other conditions).
Istio runs this in its validation (pkg/config/validation/validation.go: analyzeUnreachableHTTPRules,
genMatchHTTPRoutes, coveredValidation, and the TCP and TLS variants) and the analyzer reports it with these
codes; this is the same walk, rule by rule. Config only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import msgspec

from isthmus.analyze.context import Context, Entry

EXACT, PREFIX = "exact:", "prefix:"

_encode = msgspec.json.Encoder(order="deterministic").encode


class VirtualServiceRuleAnalyzer:
    name: ClassVar[str] = "virtualservice.UnreachableRuleAnalyzer"
    description: ClassVar[str] = "Checks for VirtualService rules and matches that can never be used"
    codes: ClassVar[tuple[str, ...]] = ("IST0130", "IST0131")
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        for vs in ctx.of("VirtualService"):
            def unused(rule: str, reason: str, vs: Entry = vs) -> None:
                ctx.report("IST0130", vs, rule, reason)

            def ineffective(rule: str, match: str, dup: str, vs: Entry = vs) -> None:
                ctx.report("IST0131", vs, rule, match, dup)

            _walk(vs.spec.http or [], unused, ineffective, http=True)
            _walk(vs.spec.tcp or [], unused, ineffective, http=False)
            _walk(vs.spec.tls or [], unused, ineffective, http=False)


def _rule_name(route: Any, index: int, http: bool) -> str:
    return f'"{route.name}"' if http and route.name else f"#{index}"


def _match_name(match: Any, index: int, http: bool) -> str:
    return f'"{match.name}"' if http and match.name else f"#{index}"


def _as_json(match: Any, http: bool) -> bytes:
    """The match without its name: what routing compares."""
    if http and match.name:
        match = msgspec.structs.replace(match, name=None)
    return _encode(match)


def _walk(routes: list[Any], unused: Callable[[str, str], None], ineffective: Callable[[str, str, str], None],
          http: bool) -> None:
    seen: dict[bytes, int] = {}
    empty_at = -1
    prefixes: list[_PrefixMatch] = []
    for i, route in enumerate(routes):
        if not route.match:
            if empty_at >= 0:
                unused(_rule_name(route, i, http), "only the last rule can have no matches")
            empty_at = i
            continue
        duplicates = 0
        for j, match in enumerate(route.match):
            if empty_at >= 0:
                unused(_rule_name(route, i, http), "route without matches defined before")
                continue
            key = _as_json(match, http)
            if key in seen:
                dup = seen[key]
                ineffective(_rule_name(route, i, http), _match_name(match, j, http), _rule_name(routes[dup], dup, http))
                duplicates += 1
                continue
            seen[key] = i
            if http:
                prefix = _prefix_match(route, match, i, j)
                if prefix is not None:
                    prefixes.append(prefix)
        if duplicates == len(route.match):
            unused(_rule_name(route, i, http), "all matches used by prior rules")
    for a_index, a in enumerate(prefixes):
        for b in prefixes[a_index + 1:]:
            if b.prefix != a.prefix and _covers(a, b):
                ineffective(b.route, f"{b.match} of prefix {b.prefix}", f"{a.match} of prefix {a.prefix} on {a.route}")


class _PrefixMatch(NamedTuple):
    route: str
    match: str
    prefix: str
    port: int
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without: dict[str, str]


def _exact_or_prefix(m: Any) -> str:
    if m is None:
        return ""
    if m.exact:
        return EXACT + m.exact
    if m.prefix:
        return PREFIX + m.prefix
    return ""


def _prefix_match(route: Any, match: Any, i: int, j: int) -> _PrefixMatch | None:
    """Istio's genMatchHTTPRoutes: only matches on a uri prefix take part."""
    if match.uri is None or not match.uri.prefix:
        return None
    return _PrefixMatch(
        _rule_name(route, i, True), _match_name(match, j, True), match.uri.prefix, match.port or 0,
        _exact_or_prefix(match.method) or EXACT + "GET", _exact_or_prefix(match.authority),
        {k: _exact_or_prefix(v) for k, v in (match.headers or {}).items()},
        {k: _exact_or_prefix(v) for k, v in (match.query_params or {}).items()},
        {k: _exact_or_prefix(v) for k, v in (match.without_headers or {}).items()})


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's coveredValidation: the earlier `a` takes every request the later `b` would."""
    if not b.prefix.startswith(a.prefix) or a.port != b.port:
        return False
    for x, y in ((a.method, b.method), (a.authority, b.authority)):
        if x != y and not x.startswith(y):
            return False
    for x_map, y_map in ((a.headers, b.headers), (a.query, b.query), (a.without, b.without)):
        if len(x_map) != len(y_map):
            return False
        for key, x in x_map.items():
            if key not in y_map or (x != y_map[key] and not x.startswith(y_map[key])):
                return False
    return True

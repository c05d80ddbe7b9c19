"""Istio's HTTPRewrite of one rule, compiled once: what the request carries upstream instead.

As Istio translates it for Envoy (one Envoy route per match, each with prefix_rewrite or regex_rewrite):
- `uri` replaces the part of the path the match matched: the prefix of a uri `prefix` match (on the full
  path, so the query after it is kept); the whole path (query kept) of an `exact` or `regex` match; and
  the leading "/" when the match has no uri condition (Envoy's route is then prefix "/"), so `/a` with
  rewrite `/v2` goes upstream as `/v2a`, as it does in Istio. With several matches of different kinds,
  the first match that holds decides, evaluated again only for such rules.
- `uriRegexRewrite` replaces every match of `match` in the path (query kept) with `rewrite`, whose `\\N`
  are groups (RE2 syntax, `\\\\` a backslash).
- `authority` replaces the Host header sent upstream.
Routing, logs and `redirect` use the request as the client sent it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from proto import xds
from proxy.core.request import Caller, RequestHead
from proxy.outbound.route_match import CompiledMatch

WHOLE = -1  # replace the whole path (exact or regex match)


def path_without_query(path: str) -> str:
    """As proxy.core.request.path_without_query: the path Envoy's exact/regex matches and regex rewrites see."""
    for sep in "?#":
        cut = path.find(sep)
        if cut >= 0:
            path = path[:cut]
    return path


def re2_replacement(rewrite: str, groups: int) -> Callable[[re.Match[str]], str]:
    """A re.sub replacement function for an RE2 rewrite string; raises ValueError."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    while i < len(rewrite):
        ch = rewrite[i]
        if ch == "\\":
            nxt = rewrite[i + 1:i + 2]
            if nxt.isdigit():
                if int(nxt) > groups:
                    raise ValueError(f"rewrite uses group \\{nxt}, the regex has {groups}")
                parts.append("".join(literal))
                literal = []
                parts.append(int(nxt))
            elif nxt == "\\":
                literal.append("\\")
            else:
                raise ValueError(f"invalid rewrite {rewrite!r}")
            i += 2
            continue
        literal.append(ch)
        i += 1
    parts.append("".join(literal))
    frozen = tuple(p for p in parts if p != "")

    def replace(m: re.Match[str]) -> str:
        return "".join(p if isinstance(p, str) else (m.group(p) or "") for p in frozen)

    return replace


def _cut(match: xds.RouteMatch | None) -> int:
    """How much of the path a uri rewrite replaces for this match: a prefix length, or WHOLE."""
    if match is None or match.uri is None:
        return 1  # Envoy's route for "no uri condition" is prefix "/"
    if match.uri.prefix is not None:
        return len(match.uri.prefix)
    return WHOLE


class Rewrite:
    __slots__ = ("uri", "cut", "cuts", "pattern", "replace", "authority")

    def __init__(self, config: xds.Rewrite, matches: list[xds.RouteMatch],
                 compiled: tuple[CompiledMatch, ...]) -> None:
        self.uri = config.uri
        self.authority = config.authority.encode("latin-1") if config.authority else None
        self.pattern: re.Pattern[str] | None = None
        self.replace: Callable[[re.Match[str]], str] | None = None
        if config.regex is not None:
            try:
                self.pattern = re.compile(config.regex)
            except re.error as exc:
                raise ValueError(f"rewrite regex {config.regex!r} does not compile: {exc}") from exc
            self.replace = re2_replacement(config.regex_rewrite, self.pattern.groups)
        cuts = [_cut(m) for m in matches] or [_cut(None)]
        self.cut = cuts[0]
        # Only when the matches disagree is the matching one looked up per request.
        self.cuts = tuple(zip(compiled, cuts)) if len(set(cuts)) > 1 else ()

    def _cut_for(self, head: RequestHead, path: str, caller: Caller) -> int:
        for match, cut in self.cuts:
            if match.matches(head, path, caller):
                return cut
        return self.cut

    def target(self, head: RequestHead, caller: Caller) -> bytes | None:
        """The request target to send upstream, or None to keep the client's."""
        path = head.path
        if self.uri is not None:
            cut = self._cut_for(head, path_without_query(path), caller) if self.cuts else self.cut
            if cut == WHOLE:
                cut = len(path_without_query(path))
            return (self.uri + path[cut:]).encode("latin-1")
        if self.pattern is not None:
            bare = path_without_query(path)
            return (self.pattern.sub(self.replace, bare) + path[len(bare):]).encode("latin-1")  # type: ignore[arg-type]
        return None

    def headers(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        if self.authority is None:
            return headers
        out = [h for h in headers if h[0] != b"host"]
        out.append((b"host", self.authority))
        return out


def from_rule(rule: xds.HttpRule, compiled: tuple[CompiledMatch, ...]) -> Rewrite | None:
    if rule.rewrite is None:
        return None
    return Rewrite(rule.rewrite, rule.matches, compiled)

"""Where a rule reads tokens from, and taking them out of the request once verified (forwardOriginalToken false).

    Locations.of(rule)                         compiled once per push
    Locations.extract(head, headers) -> list   the tokens, as (token, kind, name), in Envoy's order
    remove(head, kind, name)                   the token's header or query parameter, gone upstream

Envoy's extractor (envoyproxy/envoy source/extensions/filters/http/jwt_authn/extractor.cc), which Istio
configures from fromHeaders / fromParams / fromCookies (pilot/pkg/security/authn/policy_applier.go):
- no location at all: `Authorization: Bearer <token>` and the `access_token` query parameter (Istio's and
  Envoy's default);
- a header: every value of that (lower-cased) header is a token; with a prefix, only values that contain
  the prefix, the token starting at the first base64url character after it (a value with nothing after
  the prefix is taken whole, and then fails to parse). The prefix is case-sensitive ("bearer x" is no
  token, as in Envoy);
- a query parameter: its first value, percent-decoded;
- a cookie: its first value in the Cookie headers, surrounding double quotes removed.
Tokens are listed header locations first (sorted by name+prefix), then parameters, then cookies (each
sorted), and verified from the last one back, as Envoy does, which decides the failure reported when
several fail.

Removal (forward: false) is Envoy's: the whole header goes; a query parameter is dropped from the path,
every other byte of the path kept as sent; a cookie stays (Envoy's JwtCookieLocation::removeJwt does
nothing), so an app that reads its session cookie keeps working as under Istio.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_to_bytes

from proto.security import JwtRule
from proxy.core.request import RequestHead

HEADER, PARAM, COOKIE = 0, 1, 2
Found = tuple[bytes, int, object]  # (token, kind, header name bytes | parameter / cookie name str)
_TOKEN_START = re.compile(rb"[A-Za-z0-9_.-]")
_DEFAULT_HEADERS = ((b"authorization", b"Bearer "),)
_DEFAULT_PARAMS = ("access_token",)


def header_token(value: bytes, prefix: bytes) -> bytes | None:
    """The token in one header value (None: the prefix is not in it)."""
    if not prefix:
        return value
    at = value.find(prefix)
    if at < 0:
        return None
    start = _TOKEN_START.search(value, at + len(prefix))
    return value[start.start():] if start is not None else value


def query_params(path: str) -> dict[str, bytes]:
    """First value of every query parameter (name and value percent-decoded)."""
    found: dict[str, bytes] = {}
    for part in path.partition("?")[2].split("&"):
        name, _, value = part.partition("=")
        name = unquote(name)
        if name and name not in found:
            found[name] = unquote_to_bytes(value)
    return found


def cookies(headers: list[tuple[bytes, bytes]], wanted: frozenset[str]) -> dict[str, bytes]:
    """First value of each wanted cookie across the Cookie headers."""
    found: dict[str, bytes] = {}
    for name, value in headers:
        if name != b"cookie":
            continue
        for pair in value.split(b";"):
            key, eq, val = pair.strip(b" \t").partition(b"=")
            key_s = key.decode("latin-1")
            if eq and key_s in wanted and key_s not in found:
                if len(val) >= 2 and val[:1] == b'"' and val[-1:] == b'"':
                    val = val[1:-1]
                found[key_s] = val
    return found


class Locations:
    """One rule's token locations, in Envoy's extraction order."""

    __slots__ = ("headers", "params", "cookies", "header_names")

    def __init__(self, headers: tuple[tuple[bytes, bytes], ...], params: tuple[str, ...],
                 cookies: tuple[str, ...]) -> None:
        self.headers = headers
        self.params = params
        self.cookies = cookies
        self.header_names = frozenset(name for name, _ in headers)

    @classmethod
    def of(cls, rule: JwtRule) -> Locations:
        if not rule.from_headers and not rule.from_params and not rule.from_cookies:
            return cls(_DEFAULT_HEADERS, _DEFAULT_PARAMS, ())
        headers = {(h.name.lower().encode("latin-1"), (h.prefix or "").encode("latin-1"))
                   for h in rule.from_headers or ()}
        return cls(tuple(sorted(headers, key=lambda h: h[0] + h[1])), tuple(sorted(set(rule.from_params or ()))),
                   tuple(sorted(set(rule.from_cookies or ()))))

    def extract(self, head: RequestHead, seen: list[tuple[bytes, bytes]]) -> list[Found]:
        """The tokens in this rule's locations. `seen`: the request's headers whose names any rule reads
        (one pass over the head for all rules)."""
        found: list[Found] = []
        for name, prefix in self.headers:
            for have, value in seen:
                if have == name:
                    token = header_token(value, prefix)
                    if token is not None:
                        found.append((token, HEADER, name))
        if self.params and "?" in head.path:
            params = query_params(head.path)
            for param in self.params:
                if param in params:
                    found.append((params[param], PARAM, param))
        if self.cookies:
            jar = cookies(seen, frozenset(self.cookies))
            for cookie in self.cookies:
                if cookie in jar:
                    found.append((jar[cookie], COOKIE, cookie))
        return found


def remove(head: RequestHead, kind: int, name: object) -> None:
    """Take a verified token out of the request before it goes upstream (a cookie stays, as in Envoy)."""
    if kind == HEADER:
        head.headers = [h for h in head.headers if h[0] != name]
        head.edited = True
    elif kind == PARAM:
        path, _, query = head.path.partition("?")
        kept = [part for part in query.split("&") if unquote(part.partition("=")[0]) != name]
        head.path = f"{path}?{'&'.join(kept)}" if kept else path
        head.edited = True

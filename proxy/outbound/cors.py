"""Istio's corsPolicy of one rule, compiled once, applied as Envoy's CORS filter does.

- A request is a CORS request when its Origin is allowed: an `allowOrigins` match holds for it, or one
  holds for the literal "*" (Envoy's wildcard). Other requests pass untouched (a preflight with an
  unknown origin goes upstream).
- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered by the sidecar: 200
  with access-control-allow-origin (the request's origin), -allow-methods, -allow-headers, -max-age and
  -allow-credentials as configured.
- The response to any other CORS request gets access-control-allow-origin, -allow-credentials and
  -expose-headers added.
"""

from __future__ import annotations

from proto import xds
from proxy.core.request import RequestHead
from proxy.outbound.string_match import Matcher, string_matcher

Header = tuple[bytes, bytes]


class Cors:
    __slots__ = ("origins", "wildcard", "preflight", "actual")

    def __init__(self, config: xds.CorsPolicy) -> None:
        self.origins: tuple[Matcher, ...] = tuple(string_matcher(o) for o in config.allow_origins)
        self.wildcard = any(m("*") for m in self.origins)
        credentials = ((b"access-control-allow-credentials", b"true"),) if config.allow_credentials else ()
        pre: list[Header] = []
        if config.allow_methods:
            pre.append((b"access-control-allow-methods", ",".join(config.allow_methods).encode("latin-1")))
        if config.allow_headers:
            pre.append((b"access-control-allow-headers", ",".join(config.allow_headers).encode("latin-1")))
        if config.max_age_s is not None:
            pre.append((b"access-control-max-age", b"%d" % config.max_age_s))
        self.preflight = (*credentials, *pre)
        expose = ((b"access-control-expose-headers", ",".join(config.expose_headers).encode("latin-1")),) \
            if config.expose_headers else ()
        self.actual = (*credentials, *expose)

    def origin(self, head: RequestHead) -> bytes | None:
        """The request's Origin when it is allowed, else None."""
        origin = head.header(b"origin")
        if origin is None or not origin:
            return None
        if self.wildcard:
            return origin
        text = origin.decode("latin-1")
        for match in self.origins:
            if match(text):
                return origin
        return None

    def answer_preflight(self, head: RequestHead, close: bool) -> bytes | None:
        """The whole preflight response, or None when this is not a preflight of an allowed origin."""
        if head.method != "OPTIONS" or not head.header(b"access-control-request-method"):
            return None
        origin = self.origin(head)
        if origin is None:
            return None
        parts = [b"HTTP/1.1 200 OK\r\naccess-control-allow-origin: ", origin, b"\r\n"]
        for name, value in self.preflight:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-length: 0\r\nconnection: close\r\n\r\n" if close else b"content-length: 0\r\n\r\n")
        return b"".join(parts)

    def response_headers(self, head: RequestHead, headers: list[Header]) -> list[Header]:
        origin = self.origin(head)
        if origin is None:
            return headers
        drop = {b"access-control-allow-origin", *(name for name, _ in self.actual)}
        return [h for h in headers if h[0] not in drop] + [(b"access-control-allow-origin", origin), *self.actual]


def from_rule(rule: xds.HttpRule) -> Cors | None:
    return Cors(rule.cors) if rule.cors is not None else None

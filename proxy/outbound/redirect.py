"""Answers a rule gives at the sidecar without going upstream: Istio's directResponse and redirect.

Compiled once per rule; `respond(head, is_head, close)` returns (status, the whole response bytes).
A direct response carries its body (with `content-type: text/plain` when there is one, as Envoy's local
replies do). A redirect answers `redirectCode` (default 301) with a `location` built as Envoy's router
builds it from the request:
- scheme: `scheme`, else the request's ("http": the sidecar's outbound listener speaks plain HTTP);
- host: `authority` (taken whole, with any port it carries), else the request's Host header;
- port: `port`; `derivePort: FROM_REQUEST_PORT` the port the request was sent to;
  `FROM_PROTOCOL_DEFAULT` none; otherwise the port the host already carries, dropped when the scheme
  changes and it was the old scheme's default. A port that is the default of the final scheme is not
  written;
- path: `uri` replaces the path and keeps the request's query unless `uri` has its own; else unchanged.
"""

from __future__ import annotations

from http import HTTPStatus

from proto import xds
from proxy.core.request import RequestHead

_DEFAULT_PORT = {"http": 80, "https": 443}
REQUEST_SCHEME = "http"


def _status_line(status: int) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())


def _ending(close: bool) -> bytes:
    return b"connection: close\r\n\r\n" if close else b"\r\n"


class DirectResponse:
    __slots__ = ("status", "head", "body")

    def __init__(self, config: xds.DirectResponse) -> None:
        if not 200 <= config.status <= 599:
            raise ValueError(f"direct response status {config.status} is not within 200..599")
        self.status = config.status
        self.body = config.body
        ctype = b"content-type: text/plain\r\n" if config.body else b""
        self.head = b"%s%scontent-length: %d\r\n" % (_status_line(config.status), ctype, len(config.body))

    def respond(self, head: RequestHead, is_head: bool, close: bool) -> tuple[int, bytes]:
        return self.status, b"".join((self.head, _ending(close), b"" if is_head else self.body))


def _split_host(authority: str) -> tuple[str, int | None]:
    """`host[:port]` or `[v6]:port` -> (host as written, port or None)."""
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            return authority[:end + 1], int(rest[1:])
        return authority, None
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return authority, None


class Redirect:
    __slots__ = ("status", "line", "uri", "authority", "port", "derive", "scheme")

    def __init__(self, config: xds.Redirect) -> None:
        if config.code not in (301, 302, 303, 307, 308):
            raise ValueError(f"redirect code {config.code} is not 301, 302, 303, 307 or 308")
        self.status = config.code
        self.line = _status_line(config.code)
        self.uri = config.uri
        self.authority = config.authority
        self.port = config.port
        self.derive = config.derive_port
        self.scheme = config.scheme

    def location(self, head: RequestHead) -> str:
        scheme = self.scheme or REQUEST_SCHEME
        if self.authority is not None:
            host, port = _split_host(self.authority)
        else:
            raw = head.header(b"host")
            host, port = _split_host(raw.decode("latin-1")) if raw is not None else (head.host, None)
            if port is not None and scheme != REQUEST_SCHEME and port == _DEFAULT_PORT[REQUEST_SCHEME]:
                port = None
        if self.port is not None:
            port = self.port
        elif self.derive == "FROM_REQUEST_PORT":
            port = head.port
        elif self.derive == "FROM_PROTOCOL_DEFAULT":
            port = None
        if port == _DEFAULT_PORT.get(scheme):
            port = None
        path = head.path
        if self.uri is not None:
            query = path.find("?")
            path = self.uri if "?" in self.uri or query < 0 else self.uri + path[query:]
        return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"

    def respond(self, head: RequestHead, is_head: bool, close: bool) -> tuple[int, bytes]:
        location = self.location(head).encode("latin-1", "replace")
        return self.status, b"".join((self.line, b"location: ", location, b"\r\ncontent-length: 0\r\n",
                                      _ending(close)))


def from_rule(rule: xds.HttpRule) -> DirectResponse | Redirect | None:
    if rule.direct_response is not None:
        return DirectResponse(rule.direct_response)
    if rule.redirect is not None:
        return Redirect(rule.redirect)
    return None

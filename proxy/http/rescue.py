"""The one place a failure becomes an HTTP response (CONVENTIONS 2, after linkerd's ServerRescue).

Stages raise the typed errors of proxy/core/errors.py; the server calls `rescue` once, writes the bytes it
returns, and puts the flag in the access-log record (never in a response header: clients should not
learn about mesh internals beyond the one-line body).

Anything that is not a ProxyError is our own bug: it answers 500 and logs one line with its traceback
(`internal_error`), so a fault in a stage never looks like the client's.
"""

from __future__ import annotations

from http import HTTPStatus

from proxy.core.errors import ProxyError
from runtime.log import get_logger

log = get_logger("proxy.http")

_CLOSE = b"connection: close\r\n\r\n"
_KEEP = b"\r\n"

# Status line and fixed headers up to the content-length value, built once per status we can emit.
_HEADS: dict[int, bytes] = {
    s: b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: " % (s, HTTPStatus(s).phrase.encode())
    for s in (400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 502, 503, 504)
}
# Body when the raiser gave no detail.
_DEFAULT_BODY: dict[int, bytes] = {s: HTTPStatus(s).phrase.lower().encode() + b"\n" for s in _HEADS}


def rescue(exc: BaseException, close: bool) -> tuple[int, str, bytes]:
    """(status, access-log flag, complete response bytes) for `exc`; anything untyped is a 500."""
    if isinstance(exc, ProxyError):
        status, flag, detail, newline = exc.status, exc.flag, exc.detail, exc.newline
    else:
        log_bug(exc)
        status, flag, detail, newline = 500, "-", "internal proxy error", True
    head = _HEADS.get(status)
    if head is None:  # a future ProxyError subclass with a status not listed above
        head = b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: " % (
            status,
            HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b"Error",
        )
    if detail:
        body = detail.encode("utf-8", "replace")
        if newline:
            body += b"\n"
    else:
        body = _DEFAULT_BODY.get(status, b"error\n")
    extra = exc.headers if isinstance(exc, ProxyError) else b""  # e.g. RateLimited's x-ratelimit-*
    return status, flag, b"".join((head, b"%d\r\n" % len(body), extra, _CLOSE if close else _KEEP, body))


def log_bug(exc: BaseException) -> None:
    """One error line with the traceback for an exception our own code raised while serving a client."""
    log.error("internal_error", error=repr(exc), exc_info=exc)

"""Request heads for the two listener modes, and the header rules shared by both directions.

Outbound, the app uses us as its HTTP proxy: the destination comes from an absolute-form request target
(`GET http://reviews:9080/x HTTP/1.1`) or else the Host header, and the request line is rewritten to
origin-form. Inbound, we front the local app: the path goes through as is, the host is the Host header.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Iterator

import httptools

from proxy.core.errors import HOST_SHOWN, BadRequest

CRLF = b"\r\n"
COLON_SP = b": "
HTTP11 = b" HTTP/1.1\r\n"
TE_CHUNKED = b"transfer-encoding: chunked\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"

# Headers that describe one hop only (RFC 9110 7.6.1); transfer-encoding is re-done by us per hop.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"transfer-encoding")
)
# We answer `Expect: 100-continue` ourselves (as Envoy does by default), so it does not go upstream.
REQUEST_DROP = HOP_BY_HOP | {b"expect"}
_CONNECTION_OPTIONS = frozenset((b"close", b"keep-alive", b"upgrade"))
# Names a Connection header may not take out of a forwarded message: the framing and the routing we rely on.
# Without Content-Length a request's body went upstream unframed, read there as the next request (smuggled
# past routing and policy), and a response went to the client unframed on a kept-alive connection. RFC 9110
# 7.6.1 forbids listing a field meant for every recipient; Envoy never removes either.
_NEVER_LISTED = frozenset((b"content-length", b"host"))


class Mode(enum.Enum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


# Connection values that name no extra header, as clients and servers usually send them: one set lookup
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close", b"upgrade", b"Keep-Alive", b"Close", b"Upgrade"))


def connection_tokens(value: bytes) -> frozenset[bytes] | None:
    """Extra header names a Connection header declares hop-by-hop, or None (the usual case). Never
    Content-Length or Host (_NEVER_LISTED). A message with several Connection lines drops the union
    (`more_tokens`)."""
    if value in _PLAIN_CONNECTION:
        return None
    extra = None
    for token in value.split(b","):
        token = token.strip().lower()
        if token and token not in _CONNECTION_OPTIONS and token not in _NEVER_LISTED:
            extra = (extra or frozenset()) | {token}
    return extra


def more_tokens(drop: frozenset[bytes] | None, value: bytes) -> frozenset[bytes] | None:
    """`drop` (the names earlier Connection lines listed) with those of one more Connection line: a field
    sent as several lines is one list (RFC 9110 5.3), so every line counts, not only the last."""
    tokens = connection_tokens(value)
    if drop is None or tokens is None:
        return tokens or drop
    return drop | tokens


# RFC 3986 3.2.2: unreserved, pct-encoded, sub-delims, and ':' inside an IP literal (no '@', '/', '?', '#', '\\',
# spaces or controls). Checked once per distinct valid Host (the _AUTHORITIES cache), not per request.
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:"


def split_authority(authority: bytes) -> tuple[str, int]:
    """`host[:port]` or `[v6]:port` -> (host, port); the port defaults to 80."""
    if authority[:1] == b"[":
        end = authority.find(b"]")
        if end < 0 or (len(authority) > end + 1 and authority[end + 1 : end + 2] != b":"):
            raise BadRequest("invalid host %r" % authority[:HOST_SHOWN].decode("latin-1"))
        host, port_b = authority[1:end], authority[end + 2 :]
    else:
        host, _, port_b = authority.partition(b":")
    # userinfo (`evil@reviews`) is not part of a Host (RFC 9110 7.2); nor is any byte outside RFC 3986's
    # reg-name / IP-literal set (Envoy's authorityIsValid: a 400): `evil.com/.example.com` would otherwise match
    # a `*.example.com` virtual host and go on into a Location (httpsRedirect) or upstream as the authority.
    if not host or host.translate(None, _HOST_CHARS):
        raise BadRequest("invalid host %r" % authority[:HOST_SHOWN].decode("latin-1"))
    if not port_b:
        return host.decode("latin-1"), 80
    if not port_b.isdigit() or not 0 < int(port_b) < 65536:
        raise BadRequest("invalid port in host %r" % authority[:HOST_SHOWN].decode("latin-1"))
    return host.decode("latin-1"), int(port_b)


def resolve(mode: Mode, url: bytes, host_header: bytes | None) -> tuple[str, int, bytes, bytes | None]:
    """(host, port, request-target to send upstream, replacement Host value or None)."""
    if mode is Mode.OUTBOUND and url[:1] != b"/" and url != b"*":
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise BadRequest("invalid request target %r" % url.decode("latin-1")) from None
        if not parsed.host or parsed.userinfo:  # RFC 9110 4.2.4: userinfo in an http(s) URI is an error
            raise BadRequest("invalid request target %r" % url.decode("latin-1"))
        port = parsed.port or (443 if parsed.schema.lower() == b"https" else 80)
        target = parsed.path or b"/"
        if parsed.query is not None:
            target += b"?" + parsed.query
        authority = (b"[%s]" % parsed.host) if b":" in parsed.host else parsed.host
        if parsed.port:
            authority += b":%d" % parsed.port
        # RFC 9112 3.2.2: with an absolute-form target the Host header is replaced by its authority.
        return parsed.host.decode("latin-1"), port, target, authority
    if host_header is None:
        raise BadRequest("missing Host header")
    found = _AUTHORITIES.get(host_header)  # a client sends the same Host on every request: parse it once
    if found is None:
        found = split_authority(host_header)
        if len(host_header) <= AUTHORITY_CACHE_KEY_MAX:
            if len(_AUTHORITIES) >= AUTHORITY_CACHE_SIZE:
                _AUTHORITIES.clear()
            _AUTHORITIES[host_header] = found
    host, port = found
    if url[:1] != b"/" and url != b"*":  # inbound absolute-form: it must name the host Host names
        url = _check_absolute(url, host, port)  # and the app gets origin-form, as from any sidecar
    return host, port, url, None


# Host value -> split_authority's answer, for valid values only (a bad one raises each time). Bounded in
# entries and in key length (a DNS name is at most 253 bytes), so at most ~0.3 MB whatever clients send.
AUTHORITY_CACHE_SIZE = 1024
AUTHORITY_CACHE_KEY_MAX = 261  # 253 + ":65535"; longer values are parsed every time
_AUTHORITIES: dict[bytes, tuple[str, int]] = {}
# The cache's lookup, for the listener's common case (origin-form, a Host seen before) without a resolve() call;
# bound once, so _AUTHORITIES is only ever cleared in place, never rebound.
cached_authority = _AUTHORITIES.get


def _check_absolute(url: bytes, host: str, port: int) -> bytes:
    """RFC 9112 3.2.2 makes an absolute-form target's authority win over Host: if the two disagreed the app
    could serve one host while we decided by the other. Returns the origin-form target sent to the app."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise BadRequest("invalid request target %r" % url.decode("latin-1")) from None
    if not parsed.host or parsed.userinfo:
        raise BadRequest("invalid request target %r" % url.decode("latin-1"))
    if parsed.host.decode("latin-1").lower() != host.lower() or (parsed.port or 80) != port:
        raise BadRequest("the request target's host differs from the Host header")
    target = parsed.path or b"/"
    return target + b"?" + parsed.query if parsed.query is not None else target


def request_head(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                 drop: frozenset[bytes] | None, chunked: bool) -> list[bytes]:
    """The upstream request head as parts (joined with the first body bytes by the caller)."""
    parts = [method, b" ", target, HTTP11]
    append = parts.append
    for name, value in headers:
        if name in REQUEST_DROP or (drop is not None and name in drop):
            continue
        append(name)
        append(COLON_SP)
        append(value)
        append(CRLF)
    if chunked:
        append(TE_CHUNKED)
    append(CRLF)
    return parts


# `HTTP/1.1 200 OK\r\n` per (status, reason), filled as upstreams use them; bounded against odd reasons.
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[(status, reason)] = line
    return line


def write_response_head(out: list[bytes], status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                        drop: frozenset[bytes] | None, chunked: bool, close: bool) -> None:
    append = out.append
    append(status_line(status, reason))
    for name, value in headers:
        if name in HOP_BY_HOP or (drop is not None and name in drop):
            continue
        append(name)
        append(COLON_SP)
        append(value)
        append(CRLF)
    if chunked:
        append(TE_CHUNKED)
    if close:
        append(CONNECTION_CLOSE)
    append(CRLF)


# x-request-id: a per-process random UUID-shaped prefix plus a counter, instead of uuid4() per request. The ids
# are made _BATCH at a time (the counter's last two hex digits from a table): one %-format of an int per batch
# instead of one per request (~2k instructions each), the same bytes as `b"%s%012x" % (_prefix, n)`, n from 1.
# `request_ids` is an iterator in C (a chain over the batches) the listener takes `next` of: no Python frame per
# request; rebound after a fork, so the listener reads it through this module.
_prefix = b""
_LOW = tuple(b"%02x" % i for i in range(256))
_BATCH = len(_LOW)
request_ids: Iterator[bytes] = iter(())


def _reseed() -> None:
    global _prefix, request_ids
    r = os.urandom(10).hex()
    _prefix = f"{r[:8]}-{r[8:12]}-4{r[13:16]}-{'89ab'[int(r[16], 16) & 3]}{r[17:20]}-".encode()
    request_ids = _ids_from(0)


def _ids_from(batch: int) -> Iterator[bytes]:
    """The ids from batch `batch` on; the counter starts at 1 (batch 0 without its first id)."""
    first = _batch_of(batch)
    return itertools.chain(first[1:] if batch == 0 else first,
                           itertools.chain.from_iterable(map(_batch_of, itertools.count(batch + 1))))


def _batch_of(batch: int) -> list[bytes]:
    high = b"%s%010x" % (_prefix, batch)
    return [high + low for low in _LOW]


_reseed()
os.register_at_fork(after_in_child=_reseed)  # a forked worker must not repeat its parent's ids


def new_request_id() -> bytes:
    return next(request_ids)


def head_end(raw: bytes, method: bytes, count: int) -> int:
    """Where the head at the start of `raw` ends (0: not usable as received), when it is certainly the head
    llhttp parsed: it starts with the method (no leading blank lines), and up to the first CRLF CRLF there
    are exactly as many LFs as the parsed head has lines (`count` headers, the request line, the blank
    line). Header values hold no CR or LF, so the parsed head ends at or before that CRLF CRLF; had it ended
    before (bare LF line ends), the LFs after it would make the count too high. An obs-fold makes it differ
    too. Then 0, and the head is rebuilt from the parsed headers."""
    return head_end_after_method(raw, count) if raw.startswith(method) else 0


def head_end_after_method(raw: bytes, count: int) -> int:
    """head_end for a `raw` already known to start with the parsed method (the listener checks that first)."""
    # A read holding just the head (the usual GET), without the search (~190 ns): the parsed head starts at
    # raw[0], ends in a LF and holds at least count + 2 of them; if all of raw holds exactly that many and ends
    # in one, the parsed head is all of raw. Its first CRLF CRLF is then its end (an empty line ends a head).
    if raw[-4:] == b"\r\n\r\n" and raw.count(b"\n") == count + 2:
        return len(raw)
    end = raw.find(b"\r\n\r\n") + 4
    if end < 4:
        return 0
    return end if raw.count(b"\n", 0, end) == count + 2 else 0

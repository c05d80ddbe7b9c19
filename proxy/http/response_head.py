"""The upstream's response head, forwarded as received when it is safe to, else parsed into headers.

The upstream connection (proxy/http/upstream.py) gives llhttp no per-header callbacks: it keeps the reads
the head arrived in and, once llhttp has parsed the whole head (on_headers_complete), either

- `scan`s it (the fast path): the head goes to the client as the upstream sent it, with only the
  hop-by-hop lines cut out (RFC 9110 7.6.1: proxy/http/head.HOP_BY_HOP and the names the Connection
  header lists) and what the exchange adds spliced in before the final CRLF. What the bytes mean to the
  client is what proxy/http/head.write_response_head would have written from the parsed headers; or
- `parse`s it (the slow path) into (status, reason, lower-case headers) for the code that rebuilds it.

`scan` takes a head only when it is certainly the head llhttp parsed, line for line:
- it starts at the response's first byte: an upstream connection carries one exchange at a time, so a
  response starts at the first byte read after the request went out; the caller passes the reads since
  then (joined when the head came in several), and only when no interim 1xx head came first. It starts
  with `HTTP/1.1 ` (an HTTP/1.0 head is rebuilt), the status llhttp parsed (a second guard, against a
  parser left mid-head by bytes an upstream sent after its previous response) and the SP after it (llhttp
  lets an upstream leave it out before an empty reason; RFC 9112 4 requires it, so that head is rebuilt).
- it is canonical: every line ends in CRLF (no bare CR or LF) and no line starts with SP or HTAB
  (obs-fold). llhttp guarantees this (it rejects all three in a response head unless its "dangerous
  leniencies" are set, which we never do; tests/proxy/test_response_head.py pins it), so a line is exactly
  what lies between two CRLFs as llhttp split it, and the head ends at the first CRLFCRLF. It is not
  checked again here: each check is another pass over the head (0.1-0.2 us each on the bench machine).
- it has at most `max_headers` header lines (`parse` raises the limit's error on the slow path).
Names are matched case-insensitively and only as a whole name followed by `:` after a CRLF (llhttp allows
no whitespace before the colon), so a header value that merely contains a name never matches.
"""

from __future__ import annotations

import re

import httptools

from proxy.core.errors import UpstreamProtocolError
from proxy.http.head import connection_tokens

# A hop-by-hop header line (head.HOP_BY_HOP), from the CRLF before it to the CRLF that ends it: cut out.
_HOP_LINE = re.compile(
    rb"(\r\n(?:connection|keep-alive|proxy-connection|te|trailer|upgrade|transfer-encoding):[^\r\n]*)",
    re.IGNORECASE,
)
_CRLF = b"\r\n"
# `HTTP/1.1 200 ` per status code: the start of a head llhttp parsed with that status. With the SP after the
# code (RFC 9112 4), which llhttp lets an upstream leave out before an empty reason: such a head is rebuilt.
_STARTS = {code: b"HTTP/1.1 %d " % code for code in range(100, 1000)}
_MIN_STATUS_LINE = len(b"HTTP/1.1 200\r\n")
_MIN_HEADER_LINE = len(b"x:\r\n")


def scan(data: bytes, status: int, max_headers: int, keep_alive: bool) -> tuple[list[bytes], bool, bool] | None:
    """The head at the start of `data`, if it may go to the client as received (see the module's rules):
    (the parts to write: the head without its final CRLF and without hop-by-hop lines; whether it has a
    Content-Length; whether it is chunked), else None; None too for a Transfer-Encoding other than `chunked`.

    `keep_alive` is llhttp's should_keep_alive() for the head: true only if it has no `Connection: close`
    and is framed by Content-Length or chunked (RFC 9112 6.3), so a head without Transfer-Encoding that
    llhttp keeps alive has a Content-Length, and only the others are searched for one."""
    global _last
    size, whole, last_status, last_keep_alive, last_max, last_found = _last
    if data[:size] == whole and status == last_status and keep_alive == last_keep_alive and max_headers == last_max:
        return last_found  # the very head answered last (an upstream repeats it within its Date's second)
    end = data.find(b"\r\n\r\n") + 2  # the head up to its final CRLF
    if end < 2 or data[:13] != _STARTS.get(status):
        return None
    head = data[:end]
    key = None
    if end <= SHAPE_KEY_MAX:
        key = head.translate(_MASK_DIGITS)
        shape = _SHAPES.get(key)
        if shape is not None and shape[0] == keep_alive and shape[1] == max_headers:
            cuts = shape[2]
            if cuts is None:
                found = [head], shape[3], shape[4]
            elif len(cuts) == 2:  # a tuple: the one cut of the common head (a list has 3 pairs or more)
                found = [head[:cuts[0]], head[cuts[1]:]], shape[3], shape[4]
            else:
                found = [head[a:b] for a, b in cuts], shape[3], shape[4]
            _last = (end + 2, data[:end + 2], status, keep_alive, max_headers, found)
            return found
    # Count lines only when the head is long enough to hold too many (each header line takes 4 bytes or more).
    if end > _MIN_STATUS_LINE + _MIN_HEADER_LINE * max_headers and head.count(b"\n") > max_headers + 1:
        return None
    pieces = _HOP_LINE.split(head)  # [kept, cut, kept, ..., kept]
    chunked = False
    drop = None
    if len(pieces) == 1:
        parts = pieces
    else:
        parts = pieces[::2]
        for line in pieces[1::2]:
            meaning = _MEANINGS.get(line)
            if meaning is None:
                meaning = _meaning(line)
            if meaning is not _OTHER:
                if meaning[0]:
                    if meaning[1] is None:  # a coding other than chunked: `parse`'s caller refuses it
                        return None
                    chunked = True
                elif meaning[1] is not None:  # every Connection line counts (RFC 9110 5.3)
                    drop = meaning[1] if drop is None else drop | meaning[1]  # type: ignore[operator]
        if drop is not None:  # rare: the Connection header names more hop-by-hop headers
            parts = [_cut(b"".join(parts), drop)]
    has_length = not chunked and (keep_alive or b"\r\ncontent-length:" in head.lower())
    if key is not None and drop is None:
        _remember(key, keep_alive, max_headers, pieces, has_length, chunked)
    return parts, has_length, chunked


# First, the head answered last: an upstream sends the same head bytes (Date, Content-Length and all) for a
# second at a time, so a hit costs one slice and one bytes comparison, without the search for the head's end
# (bytes.find parses its arguments the old way: ~400 instructions), the digit mask (bytes.translate), the shape's
# hash and the slicing a shape hit costs. One entry, compared rather than hashed: a head that differs (another
# upstream, another length) costs a comparison that stops at its first differing byte. Only a head whose shape was
# seen is kept. It is kept whole, final CRLF included, so `data` starting with it is exactly that head: it has no
# CRLFCRLF but at its end, which is then the first in `data`; and its status line is the one `_STARTS[status]`
# checks, so the status llhttp parsed must be its status too. The answer is shared by every hit: its parts list is
# only read (the exchange copies it into its output: exchange_response.py).
# (size of the head with its final CRLF, those bytes, status, keep_alive, max_headers, the answer)
_Last = tuple[int, bytes, int, bool, int, "tuple[list[bytes], bool, bool] | None"]
LAST_NONE: _Last = (0, b"", 0, False, 0, None)  # no status is 0: never a hit
_last: _Last = LAST_NONE


def last_answer() -> _Last:
    """The head scan answered last from its memos, and its answer (LAST_NONE before any). An upstream connection
    keeps it to answer its upstream's next head, which repeats it as a rule, without calling scan: matched as
    scan matches it (its max_headers is the connection pool's, fixed)."""
    return _last


# Heads an upstream sends repeat but for their digits (Date, Content-Length, ids...): each shape is split
# once. The key is the head with every digit made `0`. A digit never changes where _HOP_LINE splits (no
# hop-by-hop name has one), nor a line count, nor a Content-Length's presence. It could change what a cut
# line means only through a Connection token that names a header (`x-v1`): a shape whose Connection names
# any is not kept. A chunked line has no digit, and a coding other than chunked never gets here; any other
# cut line is cut whatever its value. Bounded in entries and key length, like _MEANINGS.
_MASK_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_Shape = tuple[bool, int, "list[tuple[int, int]] | tuple[int, int] | None", bool, bool]
_SHAPES: dict[bytes, _Shape] = {}
SHAPES_SIZE = 256
SHAPE_KEY_MAX = 1024


def _remember(key: bytes, keep_alive: bool, max_headers: int, pieces: list[bytes], has_length: bool,
              chunked: bool) -> None:
    cuts: list[tuple[int, int]] | tuple[int, int] | None = None
    if len(pieces) == 3:
        cuts = (len(pieces[0]), len(pieces[0]) + len(pieces[1]))
    elif len(pieces) > 3:
        cuts, at = [], 0
        for i, piece in enumerate(pieces):
            if not i % 2:
                cuts.append((at, at + len(piece)))
            at += len(piece)
    if len(_SHAPES) >= SHAPES_SIZE:
        _SHAPES.clear()
    _SHAPES[key] = (keep_alive, max_headers, cuts, has_length, chunked)


# What a cut line means to framing, per line as received (`\r\nConnection: keep-alive`...): upstreams send
# the same few, so each is read once. Bounded in entries and key length, like head._AUTHORITIES.
_OTHER = (False, None)
_MEANINGS: dict[bytes, tuple[bool, bool | frozenset[bytes] | None]] = {}
MEANINGS_SIZE = 256
MEANING_KEY_MAX = 128


def _meaning(line: bytes) -> tuple[bool, bool | frozenset[bytes] | None]:
    """(True, True) for a `Transfer-Encoding: chunked` line, (True, None) for another Transfer-Encoding line, (False, listed names or None) for a Connection line,
    else _OTHER. `line` is `\r\n` + name + `:` + the rest, as received."""
    name, _, rest = line[2:].partition(b":")
    name = name.lower()
    if name == b"transfer-encoding":  # (True, None): a coding we cannot forward (upstream.TRANSFER_CODING)
        chunked = is_chunked(rest.lstrip(b" \t"))
        meaning: tuple[bool, bool | frozenset[bytes] | None] = (True, True if chunked else None)
    elif name == b"connection":  # llhttp's value: the rest without its leading OWS
        meaning = (False, connection_tokens(rest.lstrip(b" \t")))
    else:
        meaning = _OTHER
    if len(line) <= MEANING_KEY_MAX:
        if len(_MEANINGS) >= MEANINGS_SIZE:
            _MEANINGS.clear()
        _MEANINGS[line] = meaning
    return meaning


def is_chunked(value: bytes) -> bool:
    """Whether a response's Transfer-Encoding value (llhttp's: no leading OWS, the trailing kept) frames its body
    as chunked for llhttp: `chunked` and trailing spaces, but no tab (llhttp then reads the body until the upstream
    closes, and a body we framed as chunked would carry the upstream's chunk lines to the client)."""
    return value.rstrip(b" ").lower() == b"chunked"


def _cut(head: bytes, drop: frozenset[bytes]) -> bytes:
    """`head` (status line and header lines, each ending in CRLF) without the header lines named in `drop`."""
    lines = head.split(_CRLF)
    kept = [lines[0]]  # the status line is no header, whatever its reason phrase holds
    for line in lines[1:]:
        if line.partition(b":")[0].lower() not in drop:
            kept.append(line)
    return _CRLF.join(kept)


class _Done(Exception):
    """The collector reached the final head: stop feeding."""


class _Collector:
    """httptools callbacks that gather one response head as the upstream connection once did itself."""

    __slots__ = ("parser", "limit", "status", "reason", "headers")

    def __init__(self, limit: int) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.limit = limit
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_message_begin(self) -> None:
        self.reason = b""
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= self.limit:
            raise UpstreamProtocolError(f"upstream response has more than {self.limit} headers")
        name = name.lower()
        # trailing OWS, which llhttp keeps (proxy/http/server.py on_header); Transfer-Encoding's is kept for
        # is_chunked (llhttp frames `chunked\t` otherwise than `chunked`), and the header is never forwarded
        if value and value[-1] < 33 and name != b"transfer-encoding":
            value = value.rstrip(b" \t")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status >= 200 or status == 101:
            self.status = status
            raise _Done
        # an interim response (100 Continue...): the head wanted follows it


def parse(data: bytes, max_headers: int) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The first final (or 101) response head in `data`, the bytes an upstream sent since the request went
    out, which llhttp has already parsed up to that head's end: (status, reason, headers with lower-case
    names, in order). Raises UpstreamProtocolError past `max_headers` headers in a head."""
    collector = _Collector(max_headers)
    parser = collector.parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(data)
    except httptools.HttpParserCallbackError as exc:
        if isinstance(exc.__context__, _Done):
            return collector.status, collector.reason, collector.headers
        raise (exc.__context__ or exc) from None
    except httptools.HttpParserError:  # what llhttp parsed once parses again: only a stale parser state
        raise UpstreamProtocolError("upstream sent a malformed response") from None
    finally:
        collector.parser = None  # no reference cycle to leave to the garbage collector
    raise RuntimeError("the response head llhttp parsed did not parse again")  # our bug: answered 500

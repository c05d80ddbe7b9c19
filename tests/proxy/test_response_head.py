"""The upstream's response head goes to the client as received (hop-by-hop lines cut, what we add spliced in
before the final CRLF) when it is the canonical head llhttp parsed at the start of a read; every other case
is parsed again and rebuilt as before (proxy/http/response_head.py). Both must mean the same to the client.
Driven without sockets, as tests/proxy/test_head_as_received.py drives the request side."""

from __future__ import annotations

import pathlib

import httptools
import pytest
from tests.proxy.test_head_as_received import FQDN, Side, get

from proto.xds import HeaderOperations, Headers, HttpRule, WeightedDestination
from proxy.core.errors import UpstreamProtocolError
from proxy.http import response_head
from proxy.http.response_head import parse, scan


def answer(side: Side, *reads: bytes, request: bytes | None = None) -> bytes:
    """Send one request through `side`, answer it upstream with `reads`; what the client got."""
    side.proto.data_received(request or get())
    assert side.upstream.data, "the request did not go upstream"
    side.upstream.data.clear()
    for data in reads:
        side.conn.data_received(data)
    out = b"".join(side.client.data)
    side.client.data.clear()
    return out


def meaning(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """What a client reads in `raw`: status, headers (lower-case names, in order), body."""
    got: dict = {"headers": [], "body": b""}

    class Reader:
        def on_header(self, name: bytes, value: bytes) -> None:
            got["headers"].append((name.lower(), value))

        def on_body(self, body: bytes) -> None:
            got["body"] += body

    parser = httptools.HttpResponseParser(Reader())
    parser.feed_data(raw)
    return parser.get_status_code(), got["headers"], got["body"]


NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
         b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok")


async def test_a_canonical_head_goes_as_received_without_its_hop_by_hop_lines():
    out = answer(Side(), NGINX)
    assert out == b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def test_names_the_connection_header_lists_are_cut_and_a_reason_with_a_colon_is_kept():
    head = (b"HTTP/1.1 200 x-hop: yes\r\nX-Hop: 1\r\nConnection: X-Hop, keep-alive\r\nX-Keep: 2\r\n"
            b"x-hop: 3\r\nContent-Length: 2\r\n\r\nok")
    out = answer(Side(), head)
    assert out == b"HTTP/1.1 200 x-hop: yes\r\nX-Keep: 2\r\nContent-Length: 2\r\n\r\nok"


async def test_a_chunked_head_is_re_chunked_for_http11_and_closed_for_http10_clients():
    chunked = b"HTTP/1.1 200 OK\r\nServer: s\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    out = answer(Side(), chunked)
    assert out == (b"HTTP/1.1 200 OK\r\nServer: s\r\ntransfer-encoding: chunked\r\n\r\n"
                   b"2\r\nok\r\n0\r\n\r\n")
    out = answer(Side(), chunked, request=get(version=b"1.0"))
    assert out == b"HTTP/1.1 200 OK\r\nServer: s\r\nconnection: close\r\n\r\nok"


async def test_a_response_read_until_close_is_chunked_and_ends_when_the_upstream_closes():
    side = Side()
    out = answer(side, b"HTTP/1.1 200 OK\r\nServer: s\r\n\r\nabc")
    assert out == b"HTTP/1.1 200 OK\r\nServer: s\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
    side.conn.connection_lost(None)
    assert b"".join(side.client.data) == b"0\r\n\r\n"


async def test_a_head_across_reads_goes_as_received_too():
    """The reads since the request went out start at the response's first byte, however many they are."""
    side = Side()
    assert answer(side, NGINX[:30], NGINX[30:]) == answer(side, NGINX) == answer(side, *(bytes([b]) for b in NGINX))


# Heads that are rebuilt from the parsed headers (lower-case names), each with what makes it so.
REBUILT = {
    "after a 100 Continue": (b"HTTP/1.1 100 Continue\r\n\r\n" + NGINX,),
    "100 Continue in a read of its own": (b"HTTP/1.1 100 Continue\r\n\r\n", NGINX),
    "HTTP/1.0 upstream": (NGINX.replace(b"HTTP/1.1", b"HTTP/1.0"),),
}


@pytest.mark.parametrize("reads", REBUILT.values(), ids=REBUILT.keys())
async def test_other_heads_are_rebuilt_and_mean_the_same(reads):
    fast = answer(Side(), NGINX)
    slow = answer(Side(), *reads)
    assert b"\r\nserver: nginx\r\n" in slow and b"\r\nServer: nginx\r\n" in fast
    assert meaning(slow) == meaning(fast)


async def test_a_route_that_edits_response_headers_gets_them_parsed():
    rule = HttpRule(destinations=[WeightedDestination(host=FQDN)],
                    headers=Headers(response=HeaderOperations(set={"x-added": "1"})))
    out = answer(Side(rule), NGINX)
    assert b"\r\nserver: nginx\r\n" in out and b"\r\nx-added: 1\r\n" in out
    assert meaning(out)[1:] == ([(b"server", b"nginx"), (b"content-type", b"text/plain"),
                                 (b"content-length", b"2"), (b"x-added", b"1")], b"ok")


async def test_a_head_response_and_a_304_have_no_body_on_the_fast_path():
    side = Side()
    head = b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 5\r\n\r\n"
    assert answer(side, head, request=get().replace(b"GET", b"HEAD")) == head
    head = b"HTTP/1.1 304 Not Modified\r\nServer: s\r\n\r\n"
    assert answer(side, head) == head  # the connection was reused: the HEAD response left no state behind


# --- scan and parse, without a connection --------------------------------------------------------------


def head_with(count: int, pad: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v%s\r\n" % (i, pad) for i in range(count)) + b"\r\n"


def test_scan_takes_at_most_max_headers_lines():
    for pad in (b"", b"p" * 20):  # short heads skip the count: each line takes 4 bytes at least
        assert scan(head_with(5, pad), 200, 5, False) is not None
        assert scan(head_with(6, pad), 200, 5, False) is None
    assert scan(head_with(2, b"p" * 100), 200, 2, False) is not None  # long, but few lines


@pytest.mark.parametrize("data", [
    b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # a leading blank line: not the read's first byte
    b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",  # not the status llhttp parsed
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",  # no end in this read
])
def test_scan_refuses_a_head_that_may_not_be_the_one_llhttp_parsed(data):
    assert scan(data, 200, 100, True) is None


@pytest.mark.parametrize("head, keep_alive, has_length, chunked", [
    (b"Content-Length: 2\r\n", True, True, False),
    (b"Content-Length: 2\r\nConnection: close\r\n", False, True, False),  # not kept alive, yet framed by length
    (b"Server: s\r\n", False, False, False),  # read until close
    (b"X-Content-Length: 2\r\nX: content-length: 3\r\n", False, False, False),  # names only at a line start
    (b"transfer-encoding: Chunked \r\n", True, False, True),
])
def test_scan_reads_framing_as_the_parsed_headers_would(head, keep_alive, has_length, chunked):
    found = scan(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n", 200, 100, keep_alive)
    assert found is not None and found[1:] == (has_length, chunked)
    assert b"ransfer-encoding" not in b"".join(found[0]).lower()


@pytest.mark.parametrize("codings", [b"gzip", b"chunked, gzip", b"gzip, chunked", b"gzip\r\nTransfer-Encoding: chunked"])
def test_scan_leaves_a_transfer_coding_other_than_chunked_to_the_slow_path_which_refuses_it(codings):
    assert scan(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: %s\r\n\r\n" % codings, 200, 100, False) is None


def test_cut_line_meanings_are_bounded():
    for i in range(response_head.MEANINGS_SIZE + 10):
        scan(b"HTTP/1.1 200 OK\r\nConnection: x-%d\r\n\r\n" % i, 200, 100, True)
    scan(b"HTTP/1.1 200 OK\r\nConnection: %s\r\n\r\n" % (b"y" * 200), 200, 100, True)
    assert 0 < len(response_head._MEANINGS) <= response_head.MEANINGS_SIZE
    assert all(len(line) <= response_head.MEANING_KEY_MAX for line in response_head._MEANINGS)


def test_a_head_seen_before_but_for_its_digits_is_split_as_if_new():
    """The shape memo (_SHAPES) answers from a head's digit-masked bytes: each answer must equal a fresh scan's."""
    heads = [b"HTTP/1.1 200 OK\r\nDate: %d\r\nConnection: keep-alive\r\nContent-Length: %d\r\nX: %d\r\n\r\n"
             % (i, i * 7, i) for i in range(1, 4)]
    heads += [b"HTTP/1.1 200 OK\r\nConnection: x-v%d\r\nX-V%d: a\r\nX-V1: b\r\n\r\n" % (i, i) for i in range(1, 4)]
    heads += [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: %d\r\nTE: %d\r\nY: 1\r\n\r\n" % (i, i)
              for i in range(1, 4)]
    for keep_alive in (True, False):
        for head in heads:
            response_head._SHAPES.clear()
            fresh = scan(head + b"body", 200, 100, keep_alive)
            for other in heads:
                scan(other, 200, 100, keep_alive)  # fill the memo with its neighbours' shapes
            assert scan(head + b"body", 200, 100, keep_alive) == fresh
    scan(heads[3], 200, 100, True)
    assert scan(heads[4], 200, 100, True)[0] == [b"HTTP/1.1 200 OK\r\nX-V1: b\r\n"]  # x-v2's cut, not x-v1's
    assert scan(heads[0], 200, 2, True) is None  # the memo keeps the header count bound (max_headers)


def test_the_head_answered_last_is_answered_again_as_a_fresh_scan_would():
    """The one-entry memo of the last head (response_head._last) answers only the very same head, with the same
    keep-alive and header bound; its answer equals a fresh scan's, however often it is asked."""
    heads = [b"HTTP/1.1 200 OK\r\nDate: 1\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nDate: 2\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nConnection: x-v1\r\nX-V1: a\r\nX-V2: b\r\n\r\n"]
    for keep_alive in (True, False):
        for head in heads:
            for max_headers in (100, 1):
                response_head._SHAPES.clear()
                response_head._last = response_head.LAST_NONE
                fresh = scan(head + b"ok", 200, max_headers, keep_alive)
                for _ in range(3):
                    for other in heads:  # the memo keeps another head, then this one again
                        scan(other + b"ok", 200, 100, not keep_alive)
                    assert scan(head + b"ok", 200, max_headers, keep_alive) == fresh
                    assert scan(head + b"ok", 200, max_headers, keep_alive) == fresh
    assert scan(heads[0], 200, 1, True) is None  # the bound is part of what the memo matches


def test_head_shapes_are_bounded():
    for i in range(response_head.SHAPES_SIZE + 10):
        scan(b"HTTP/1.1 200 OK\r\nX-%s: 1\r\n\r\n" % (b"a" * i), 200, 100, True)
    scan(b"HTTP/1.1 200 OK\r\nX: %s\r\n\r\n" % (b"y" * 2000), 200, 100, True)
    assert 0 < len(response_head._SHAPES) <= response_head.SHAPES_SIZE
    assert all(len(key) <= response_head.SHAPE_KEY_MAX for key in response_head._SHAPES)


def test_parse_skips_interim_heads_and_bounds_the_header_count():
    status, reason, headers = parse(b"HTTP/1.1 100 Continue\r\nX: 1\r\n\r\n" + NGINX, 5)
    assert (status, reason) == (200, b"OK") and headers[0] == (b"server", b"nginx") and len(headers) == 5
    with pytest.raises(UpstreamProtocolError, match="more than 4 headers"):
        parse(NGINX, 4)


# --- what the fast path relies on llhttp for ---------------------------------------------------------


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 0\r\n\r\n",  # bare LF
    b"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",  # bare CR
    b"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",  # bare CR in the status line
    b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",  # bare LF after the status line
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",  # obs-fold
    b"HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n",  # obs-fold with HTAB
    b"HTTP/1.1 200 OK\r\nConnection : close\r\nContent-Length: 0\r\n\r\n",  # whitespace before the colon
])
async def test_llhttp_refuses_every_non_canonical_head_so_scan_never_sees_one(head):
    side = Side()
    out = answer(side, head)
    assert out.startswith(b"HTTP/1.1 502 ") and b"malformed" in out


def test_nothing_in_the_proxy_makes_llhttp_lenient():
    root = pathlib.Path(__file__).parents[2] / "proxy"
    assert not [p for p in root.rglob("*.py") if "set_dangerous_leniencies" in p.read_text()]


async def test_a_status_line_without_its_space_before_an_empty_reason_is_rebuilt_with_it():
    # RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; llhttp accepts the SP left out
    out = answer(Side(), b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok")
    assert out.startswith(b"HTTP/1.1 200 \r\n") and meaning(out)[2] == b"ok"
    assert scan(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 200, 100, True) is None


@pytest.mark.parametrize("rule", [None, HttpRule(destinations=[WeightedDestination(host=FQDN)],
                                                 headers=Headers(response=HeaderOperations(set={"x-added": "1"})))],
                         ids=["as received", "rebuilt"])
async def test_a_second_head_after_a_head_response_in_the_same_read_never_reaches_the_client(rule):
    # llhttp cannot know the request was HEAD: it read "ok" as the body and parsed the next head in the same
    # read, which went to the client as a second response (before issue 9) or answered 500 (the lean path)
    side = Side(rule)
    head = b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\n\r\n"
    out = answer(side, head + b"okHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nXX", request=get().replace(b"GET", b"HEAD"))
    assert out.count(b"HTTP/1.1") == 1 and out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n")
    assert b"500" not in out and side.conn.closed  # the upstream connection is in an unknown state: not reused


@pytest.mark.parametrize("rule", [None, HttpRule(destinations=[WeightedDestination(host=FQDN)],
                                                 headers=Headers(response=HeaderOperations(set={"x-added": "1"})))],
                         ids=["as received", "rebuilt"])
async def test_a_second_response_after_a_complete_one_in_the_same_read_is_dropped_with_the_connection(rule):
    # Nothing asked for it (no upstream pipelining): the client gets the first response only, no 500, and the
    # upstream connection, whose state is unknown, is closed rather than pooled.
    side = Side(rule)
    out = answer(side, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nXX")
    assert out.count(b"HTTP/1.1") == 1 and out.endswith(b"\r\n\r\nok") and b"XX" not in out
    assert b"500" not in out and side.conn.closed


# Hostile and odd upstream heads and what the client gets: found equal, byte for byte up to header-name case and
# OWS, between the lean path and the parse-and-rebuild path before it (base9) by a differential run (attack9);
# pinned here as bytes. The rebuilt ones have lower-case names; the 502s are llhttp refusing the head, or a
# transfer coding other than chunked, which both trees forwarded with the coding's name dropped (now refused).
HOSTILE = {
    "conn_names_xfoo_ws": (
        b'HTTP/1.1 200 OK\r\nConnection:   X-Foo ,  ,x-bar  \r\nX-Foo: s\r\nx-bar: s\r\nx-baz: keep\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nx-baz: keep\r\nContent-Length: 2\r\n\r\nok'),
    "mixed_case_hop": (
        b'HTTP/1.1 200 OK\r\nCoNnEcTiOn: keep-alive\r\nKEEP-ALIVE: 1\r\nTe: x\r\ntRaIlEr: y\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
    "prefix_suffix_names": (
        b'HTTP/1.1 200 OK\r\nx-connection: a\r\nconnection-foo: b\r\nte-x: c\r\nxte: d\r\nupgrade-insecure: e\r\nkeep-alive-x: f\r\ntransfer-encodings: g\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nx-connection: a\r\nconnection-foo: b\r\nte-x: c\r\nxte: d\r\nupgrade-insecure: e\r\nkeep-alive-x: f\r\ntransfer-encodings: g\r\nContent-Length: 2\r\n\r\nok'),
    "hop_in_value": (
        b'HTTP/1.1 200 OK\r\nX-A: foo\tconnection: bar\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nX-A: foo\tconnection: bar\r\nContent-Length: 2\r\n\r\nok'),
    "ws_before_value": (
        b'HTTP/1.1 200 OK\r\nX-A:    spaced\r\nX-B:\ttabbed\r\nContent-Length:   2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nX-A:    spaced\r\nX-B:\ttabbed\r\nContent-Length:   2\r\n\r\nok'),
    "ws_after_value": (
        b'HTTP/1.1 200 OK\r\nX-A: v  \r\nX-B: w\t\r\nContent-Length: 2  \r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nX-A: v  \r\nX-B: w\t\r\nContent-Length: 2  \r\n\r\nok'),
    "reason_colon": (
        b'HTTP/1.1 200 Connection: close\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 Connection: close\r\nContent-Length: 2\r\n\r\nok'),
    "reason_odd": (
        b'HTTP/1.1 200 \xff\x01\tO K !\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 \xff\x01\tO K !\r\nContent-Length: 2\r\n\r\nok'),
    "te_two_lines": (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 66\r\n\r\n"
        b"upstream sent transfer coding 'gzip': only chunked is implemented\n"),
    "te_chunked_upper": (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'),
    "te_gzip_only": (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nokok',
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 66\r\n\r\n"
        b"upstream sent transfer coding 'gzip': only chunked is implemented\n"),
    "chunked_ext": (
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nok\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'),
    "204_body": (
        b'HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n'),
    "304_body": (
        b'HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n'),
    "http10_close": (
        b'HTTP/1.0 200 OK\r\n\r\nokok',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nokok\r\n0\r\n\r\n'),
    "103_hdrs_then": (
        b'HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\nConnection: x-y\r\n\r\nHTTP/1.1 200 OK\r\nX-Y: 1\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\nx-y: 1\r\ncontent-length: 2\r\n\r\nok'),
    "two_100s": (
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'),
    "obs_fold": (
        b'HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "bare_lf": (
        b'HTTP/1.1 200 OK\nContent-Length: 2\n\nok',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "bare_cr": (
        b'HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "nul_value": (
        b'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "cl_and_chunked": (
        b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "dup_cl_diff": (
        b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "dup_cl_same": (
        b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "space_before_colon": (
        b'HTTP/1.1 200 OK\r\nConnection : close\r\nContent-Length: 2\r\n\r\nok',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "101_no_upgrade_req": (
        b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nrawbytes',
        b'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 35\r\n\r\nupstream sent a malformed response\n'),
    "conn_names_te_chunked": (
        b'HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'),
}


@pytest.mark.parametrize("response, expected", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_upstream_heads_reach_the_client_as_pinned(response, expected):
    side = Side()
    out = answer(side, response)
    if not side.conn.closed and side.conn.until_close:  # read until close: it ends when the upstream closes
        side.conn.connection_lost(None)
        out += b"".join(side.client.data)
    assert out == expected


def test_the_head_answered_last_matches_only_whole_and_with_the_status_llhttp_parsed():
    """The last head is matched against the start of what the upstream sent, its final CRLF included: a longer head
    that starts with its lines, or the same bytes parsed with another status, is scanned afresh."""
    head = b"HTTP/1.1 200 OK\r\nDate: 1\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
    for data, status in [(head + b"X: 1\r\n\r\nok", 200), (head + b"\r\nok", 404), (head + b"\r\n", 200)]:
        response_head._SHAPES.clear()
        response_head._last = response_head.LAST_NONE
        fresh = scan(data, status, 100, True)
        for _ in range(2):
            scan(head + b"\r\nok", 200, 100, True)  # a shape hit: now the head answered last
        assert response_head._last[1] == head + b"\r\n"
        assert scan(data, status, 100, True) == fresh
    assert scan(head + b"\r\nok", 404, 100, True) is None


async def test_each_upstream_connection_answers_its_repeated_head_as_a_fresh_scan_would():
    """A connection keeps the head its upstream sent last (UpstreamConnection.last_head): its next head is answered
    from it whatever other upstreams sent meanwhile, only when the same bytes come again, and as before."""
    one, two = Side(), Side()
    heads = {one: b"HTTP/1.1 200 OK\r\nServer: a\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
             two: b"HTTP/1.1 404 Not Found\r\nServer: b\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n"}
    sent = {one: b"HTTP/1.1 200 OK\r\nServer: a\r\nContent-Length: 2\r\n\r\nok",
            two: b"HTTP/1.1 404 Not Found\r\nServer: b\r\nContent-Length: 2\r\n\r\nok"}
    for _ in range(3):
        for side in (one, two):
            assert answer(side, heads[side] + b"ok") == sent[side]
    assert one.conn.last_head[1] == heads[one] and two.conn.last_head[1] == heads[two]
    longer = heads[one][:-2] + b"X: 1\r\n\r\nok"  # starts with the kept head's lines: scanned afresh
    assert answer(one, longer) == sent[one][:-4] + b"X: 1\r\n\r\nok"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + heads[two] + b"ok"  # after a 1xx the head is rebuilt
    assert meaning(answer(two, interim)) == meaning(sent[two])

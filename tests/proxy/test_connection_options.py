"""What a Connection header may take out of a message the sidecar forwards (RFC 9110 7.6.1): the names it
lists, from every Connection line (a field sent as several lines is one list, RFC 9110 5.3), but never the
framing or the routing the sidecar relies on: a listed Content-Length or Host stays. Dropping Content-Length
from a request sent the body upstream unframed, where it was read as the next request (smuggling past the
sidecar's routing and policy, and a desync of the pooled connection); from a response it left the client an
unframed keep-alive response. Envoy never removes either. Found by differential testing (attack9)."""

from __future__ import annotations

import pytest
from tests.proxy.test_head_as_received import Side, get
from tests.proxy.test_response_head import answer, meaning

from proxy.http.head import connection_tokens

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: reviews:9080\r\n\r\n"


def post(connection: bytes) -> bytes:
    return (b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\n%s\r\nContent-Length: %d\r\n\r\n%s"
            % (connection, len(SMUGGLED), SMUGGLED))


def test_connection_tokens_never_list_content_length_or_host():
    assert connection_tokens(b"Content-Length, HOST, x-a") == frozenset({b"x-a"})
    assert connection_tokens(b"content-length") is None
    assert connection_tokens(b"close, x-b") == frozenset({b"x-b"})


@pytest.mark.parametrize("connection", [b"Connection: content-length", b"Connection: Content-Length, close",
                                        b"Connection: keep-alive\r\nConnection: content-length"])
async def test_a_request_keeps_a_content_length_its_connection_header_lists(connection):
    side = Side()
    side.proto.data_received(post(connection))
    sent = b"".join(side.upstream.data)
    head, _, body = sent.partition(b"\r\n\r\n")
    assert b"\r\ncontent-length: %d" % len(SMUGGLED) in head.lower() and body == SMUGGLED


async def test_a_request_keeps_a_host_its_connection_header_lists():
    (head,) = Side().send(get(extra=b"Connection: host\r\n"))
    assert b"\r\nhost: reviews:9080\r\n" in head.lower()


async def test_every_connection_line_of_a_request_counts():
    (head,) = Side().send(get(extra=b"Connection: x-a\r\nConnection: keep-alive\r\nX-A: 1\r\nX-B: 2\r\n"))
    assert b"\r\nx-a:" not in head.lower() and b"\r\nx-b: 2\r\n" in head.lower()


RESPONSES = {
    "as received": b"",
    "rebuilt after a 100": b"HTTP/1.1 100 Continue\r\n\r\n",
}


@pytest.mark.parametrize("before", RESPONSES.values(), ids=RESPONSES.keys())
@pytest.mark.parametrize("connection", [b"Connection: content-length, x-a", b"Connection: x-a\r\nConnection: Content-Length"])
async def test_a_response_keeps_a_content_length_its_connection_header_lists(before, connection):
    side = Side()
    out = answer(side, before + b"HTTP/1.1 200 OK\r\n%s\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok" % connection)
    status, headers, body = meaning(out)
    assert (status, body) == (200, b"ok") and (b"content-length", b"2") in headers
    assert b"x-a" not in dict(headers)
    assert answer(side, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnxt").endswith(b"\r\n\r\nnxt")


@pytest.mark.parametrize("before", RESPONSES.values(), ids=RESPONSES.keys())
async def test_every_connection_line_of_a_response_counts(before):
    out = answer(Side(), before + b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nConnection: keep-alive\r\nX-A: 1\r\n"
                                  b"Connection: X-C\r\nX-B: 2\r\nX-C: 3\r\nContent-Length: 2\r\n\r\nok")
    assert meaning(out)[1:] == ([(b"x-b", b"2"), (b"content-length", b"2")], b"ok")

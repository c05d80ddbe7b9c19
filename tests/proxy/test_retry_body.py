"""Retries carry request bodies: the exchange keeps what it sent (up to RETRY_BUFFER_LIMIT) and resends it,
whatever the framing and whether the body came with the head or after it, as Envoy's retry buffer does."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import Upstream, read_request, read_response

from proto import xds
from proxy.http import exchange
from proxy.outbound import retry
from proxy.outbound.policy import compile_policy
from proxy.core.target import Target

pytestmark = pytest.mark.timeout(30)

RETRY_5XX = compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")],
                                        retry=xds.RetryPolicy(attempts=3, retry_on=["5xx"])))


class Router:
    def __init__(self, up: Upstream, policy) -> None:  # type: ignore[no-untyped-def]
        self.up, self.policy = up, policy

    def pick(self, head) -> Target:  # type: ignore[no-untyped-def]
        policy = None if head.path == "/warm" else self.policy  # the warm-up request is not retried
        return Target("127.0.0.1", self.up.port, "outbound|80||h", policy=policy)


def fails_first(n: int, *, before_body: bool = False):  # type: ignore[no-untyped-def]
    """Keep-alive backend: 503 to its first `n` requests (with `before_body`, as soon as the head is in,
    without reading the body, then closes), then echoes each request's body."""
    seen = {"n": 0}
    answered = asyncio.Event()  # the early 503s went out (handler.answered): a test may wait for it

    async def handler(up, reader, writer):  # type: ignore[no-untyped-def]
        while True:
            if before_body and seen["n"] < n:
                await reader.readuntil(b"\r\n\r\n")
                seen["n"] += 1
                writer.write(b"HTTP/1.1 503 Nope\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
                await writer.drain()
                if seen["n"] == n:
                    answered.set()
                return
            req = await read_request(reader)
            up.requests.append(req)
            seen["n"] += 1
            if seen["n"] <= n:
                writer.write(b"HTTP/1.1 503 Nope\r\nContent-Length: 4\r\n\r\nnope")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(req.body), req.body))
            await writer.drain()
    handler.answered = answered  # type: ignore[attr-defined]
    return handler


async def early_503_read(backend) -> None:  # type: ignore[no-untyped-def]
    """Until a `before_body` backend's 503s went out and the proxy has read them. A fixed sleep lost this race
    under load (the rest of the body then went out within the first try). The 503 is in the proxy's socket
    once the backend's drain returns, and the loop's next I/O poll, which runs before these yields resume,
    hands it to the proxy."""
    await asyncio.wait_for(backend.answered.wait(), 10)
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


async def warm(reader, writer) -> None:  # type: ignore[no-untyped-def]
    """One request first, so the POST goes out on a reused upstream connection at once (the case that lost
    its body before: the head is sent before the body is read)."""
    writer.write(b"GET /warm HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await read_response(reader)).status in (200, 503)


def post(body: bytes, chunked: bool) -> tuple[bytes, bytes]:
    if chunked:
        return (b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    return b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body), body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_sent_after_the_head_on_a_reused_connection_is_resent_whole(proxy_for, chunked):
    body = bytes(range(256)) + b"x" * 89  # 345 bytes, as in the report
    async with Upstream(fails_first(3)) as up:  # the warm-up GET takes the first 503
        reader, writer = await proxy_for(Router(up, RETRY_5XX))
        await warm(reader, writer)
        head, framed = post(body, chunked)
        writer.write(head)
        await asyncio.sleep(0.05)  # routed and sent before the body arrives
        writer.write(framed)
        resp = await read_response(reader)
    assert resp.status == 200 and resp.body == body
    assert [r.body for r in up.requests[1:]] == [body, body, body]


async def test_an_empty_body_and_no_body_are_retried(proxy_for):
    async with Upstream(fails_first(2)) as up:
        reader, writer = await proxy_for(Router(up, RETRY_5XX))
        writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert (await read_response(reader)).status == 200
    assert len(up.requests) == 4


async def test_a_retry_while_the_body_is_still_arriving_sends_what_came_and_then_the_rest(proxy_for):
    backend = fails_first(1, before_body=True)
    async with Upstream(backend) as up:
        reader, writer = await proxy_for(Router(up, RETRY_5XX))
        writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
        await early_503_read(backend)  # the first try was answered 503 before the rest of the body
        writer.write(b"56789")
        resp = await read_response(reader)
    assert resp.status == 200 and resp.body == b"0123456789"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("warmed", [True, False], ids=["reused", "new-connection"])
async def test_a_body_at_the_limit_is_retried_and_one_byte_over_is_not(proxy_for, monkeypatch, chunked, warmed):
    monkeypatch.setattr(exchange, "RETRY_BUFFER_LIMIT", 100)
    for size, retried in ((100, True), (101, False)):
        async with Upstream(fails_first(2 if warmed else 1)) as up:
            reader, writer = await proxy_for(Router(up, RETRY_5XX))
            if warmed:
                await warm(reader, writer)
            head, framed = post(b"b" * size, chunked)
            writer.write(head)
            if warmed:
                await asyncio.sleep(0.05)
            writer.write(framed)
            resp = await read_response(reader)
            tries = len(up.requests) - warmed
        assert (resp.status, tries) == ((200, 2) if retried else (503, 1)), size


async def test_a_body_outgrowing_the_buffer_during_the_back_off_is_a_507(proxy_for, monkeypatch):
    monkeypatch.setattr(exchange, "RETRY_BUFFER_LIMIT", 10)
    # The back-off is jittered, random in [0, 2 s): one near 0 retried before the rest of the body came, so
    # the test failed whenever the random stream (seeded by earlier tests) drew a small number. Pin it: 1 s.
    monkeypatch.setattr(retry, "random", lambda: 0.5)
    slow = compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")],
                                       retry=xds.RetryPolicy(attempts=3, retry_on=["5xx"], backoff_ms=2000)))
    backend = fails_first(1, before_body=True)
    async with Upstream(backend) as up:
        reader, writer = await proxy_for(Router(up, slow))
        writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n01234")
        await early_503_read(backend)  # the retry now waits out its 2 s back-off
        writer.write(b"56789abcdefghij")
        resp = await read_response(reader)
    assert resp.status == 507 and b"retry" in resp.body

"""What one client connection may make the sidecar hold: request head bytes, header count, URL length and
pipelined requests, on both listeners, over loopback sockets (Envoy's defaults: proxy/http/limits.py)."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from tests.proxy.http_helpers import BOTH, RecordingApp, StubRouter, Upstream, closed, keep_alive_echo, read_response

from proxy.http.limits import Limits
from proxy.http.head import Mode

pytestmark = pytest.mark.timeout(30)

HOST = b"app.test:8080"


def head_of_size(size: int, path: bytes = b"/") -> bytes:
    """A GET whose request line and header lines (with the blank line) are exactly `size` bytes."""
    start = b"GET %s HTTP/1.1\r\nHost: %s\r\nX-Pad: " % (path, HOST)
    pad = size - len(start) - len(b"\r\n\r\n")
    assert pad >= 0
    data = start + b"p" * pad + b"\r\n\r\n"
    assert len(data) == size
    return data


def headers_request(count: int) -> bytes:
    """A GET with `count` header lines in all (Host included)."""
    return (b"GET / HTTP/1.1\r\nHost: %s\r\n" % HOST
            + b"".join(b"X-H%d: v\r\n" % i for i in range(count - 1)) + b"\r\n")


def router_for(up: Upstream) -> StubRouter:
    return StubRouter({"app.test": up.target})


@BOTH
async def test_a_head_of_exactly_60_kib_passes_and_one_byte_more_gets_431(start_proxy, connect, mode):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), mode)
        reader, writer = await connect(proxy.port)
        writer.write(head_of_size(60 * 1024))
        assert (await read_response(reader)).status == 200
        reader, writer = await connect(proxy.port)
        writer.write(head_of_size(60 * 1024 + 1))
        resp = await read_response(reader)
        assert resp.status == 431 and resp.header(b"connection") == b"close"
        assert await closed(reader)
        assert len(up.requests) == 1  # the app saw only the first


@BOTH
async def test_a_head_split_over_many_writes_is_counted_as_a_whole(start_proxy, connect, mode):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), mode, limits=Limits(max_head_bytes=4096))
        for size, status in ((4096, 200), (4097, 431)):
            reader, writer = await connect(proxy.port)
            data = head_of_size(size)
            for i in range(0, len(data), 500):
                writer.write(data[i:i + 500])
                await writer.drain()
                await asyncio.sleep(0.005)
            assert (await read_response(reader)).status == status
        assert len(up.requests) == 1


@BOTH
async def test_100_headers_pass_and_101_get_431(start_proxy, connect, mode):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), mode)
        reader, writer = await connect(proxy.port)
        writer.write(headers_request(100))
        assert (await read_response(reader)).status == 200
        reader, writer = await connect(proxy.port)
        writer.write(headers_request(101))
        resp = await read_response(reader)
        assert resp.status == 431 and b"more than 100 request headers" in resp.body
        assert await closed(reader)
        assert len(up.requests) == 1


@BOTH
async def test_a_url_at_the_limit_passes_and_one_byte_longer_gets_414(start_proxy, connect, mode):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), mode, limits=Limits(max_url_bytes=1000))
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (b"u" * 999, HOST))
        assert (await read_response(reader)).status == 200
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (b"u" * 1000, HOST))
        resp = await read_response(reader)
        assert resp.status == 414
        assert await closed(reader)
        assert len(up.requests) == 1


@BOTH
async def test_a_64_kib_request_line_gets_414_with_the_default_limits(start_proxy, connect, mode):
    app = RecordingApp()
    async with app:
        proxy = await start_proxy(router_for(app), mode)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (b"u" * 64 * 1024, HOST))
        assert (await read_response(reader)).status == 414
        assert await closed(reader)
    assert app.received == b""


@BOTH
async def test_an_endless_header_is_cut_off_with_431_and_bounded_memory(start_proxy, connect, mode):
    app = RecordingApp()
    async with app:
        proxy = await start_proxy(router_for(app), mode)
        reader, writer = await connect(proxy.port)
        chunk = b"a" * 65536
        sent = 0
        tracemalloc.start()
        try:
            answered = asyncio.ensure_future(read_response(reader))
            writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\nX-Endless: " % HOST)
            while sent < 10 * 1024 * 1024 and not answered.done():
                writer.write(chunk)
                try:
                    await writer.drain()
                except ConnectionError:
                    break
                sent += len(chunk)
                await asyncio.sleep(0)
            resp = await answered
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert resp.status == 431
        assert sent < 2 * 1024 * 1024  # answered long before the 10 MB were sent
        assert peak < 4 * 1024 * 1024  # what the test and the sidecar allocated meanwhile
        assert await closed(reader)
    assert app.received == b""


async def test_pipelined_requests_beyond_the_limit_are_not_read_and_the_connection_closes(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), Mode.OUTBOUND, limits=Limits(max_pipelined=2))
        reader, writer = await connect(proxy.port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST) for i in range(6)))
        bodies = [(await read_response(reader)) for _ in range(3)]  # the active one and two queued
        assert [r.body for r in bodies] == [b"hello /0", b"hello /1", b"hello /2"]
        assert await closed(reader)
        assert len(up.requests) == 3


async def test_pipelined_requests_within_the_limit_are_all_answered(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), Mode.INBOUND)
        reader, writer = await connect(proxy.port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST) for i in range(17)))
        for i in range(17):
            assert (await read_response(reader)).body == b"hello /%d" % i


@BOTH
@pytest.mark.parametrize("data", [b"GET /\r\n", b"GET /\r\n\r\n", b"GET /x\r\nHost: app.test\r\n\r\n"],
                         ids=["line-only", "line-and-blank", "with-header"])
async def test_an_http09_request_gets_400_and_a_close(start_proxy, connect, mode, data):
    app = RecordingApp()
    async with app:
        proxy = await start_proxy(router_for(app), mode)
        reader, writer = await connect(proxy.port)
        writer.write(data)
        resp = await read_response(reader)
        assert resp.status == 400 and b"HTTP/0.9" in resp.body
        assert await closed(reader)
    assert app.received == b""


@BOTH
async def test_two_host_headers_get_400_and_are_not_routed(start_proxy, connect, mode):
    app = RecordingApp()
    async with app:
        router = router_for(app)
        proxy = await start_proxy(router, mode)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: app.test:8080\r\nHost: evil.test\r\n\r\n")
        resp = await read_response(reader)
        assert resp.status == 400 and b"more than one Host" in resp.body
        assert await closed(reader)
    assert router.heads == [] and app.received == b""


@BOTH
async def test_a_pipelined_head_behind_another_request_is_bounded_too(start_proxy, connect, mode):
    """The second head starts inside the read that ends the first: its size is checked as parsed."""
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), mode)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /first HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST + head_of_size(60 * 1024, b"/second"))
        assert (await read_response(reader)).body == b"hello /first"
        assert (await read_response(reader)).body == b"hello /second"
        reader, writer = await connect(proxy.port)
        # over by more than the one optional space per header the parsed size cannot see
        writer.write(b"GET /first HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST + head_of_size(60 * 1024 + 3, b"/second"))
        assert (await read_response(reader)).body == b"hello /first"
        assert (await read_response(reader)).status == 431
        assert await closed(reader)
        assert [r.line.split()[1] for r in up.requests] == [b"/first", b"/second", b"/first"]


async def test_websocket_bytes_behind_a_head_near_the_limit_all_wait_for_the_101(start_proxy, connect):
    """The head ends inside the part of a read the head limit lets through: the rest is early tunnel data."""
    from tests.proxy.test_websocket import UPGRADE, ws_echo

    async with Upstream(ws_echo) as up:
        proxy = await start_proxy(StubRouter({"chat": up.target}), Mode.INBOUND,
                                  limits=Limits(max_head_bytes=len(UPGRADE) + 10))
        reader, writer = await connect(proxy.port)
        early = b"e" * 1000  # far more than the 10 bytes of head room left
        writer.write(UPGRADE + early)
        assert (await read_response(reader, head_only=True)).status == 101
        assert await asyncio.wait_for(reader.readexactly(2 + len(early)), 5) == b"hi" + early.upper()

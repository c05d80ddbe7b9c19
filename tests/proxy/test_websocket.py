"""WebSocket upgrades pass through: the 101 head is forwarded, then raw bytes are relayed both ways."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, closed, keep_alive_echo, read_request, read_response

from proxy.http.head import Mode

pytestmark = pytest.mark.timeout(30)

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: chat:9080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def ws_echo(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers 101 (plus a greeting in the same write), then echoes raw bytes upper-cased until EOF."""
    up.requests.append(await read_request(reader))
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                 b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi")
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


async def refuse(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up.requests.append(await read_request(reader))
    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    await writer.drain()


@pytest.fixture
async def env(start_proxy, connect, pool):
    return start_proxy, connect, pool


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), 5)


@pytest.mark.parametrize("mode", [Mode.OUTBOUND, Mode.INBOUND])
async def test_upgrade_is_forwarded_and_bytes_relay_both_ways(env, mode):
    start, clients, pool = env
    async with Upstream(ws_echo) as up:
        proxy = await start(StubRouter({"chat": up.target}), mode)
        reader, writer = await clients(proxy.port)
        writer.write(UPGRADE + b"early")  # bytes sent right behind the head wait for the 101
        resp = await read_response(reader, head_only=True)
        assert resp.status == 101
        assert resp.header(b"upgrade") == b"websocket"
        assert resp.header(b"sec-websocket-accept") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert await _read_exactly(reader, 2 + 5) == b"hiEARLY"
        for chunk in (b"abc", b"\x00\xff\x81binary", b"x" * 100_000):
            writer.write(chunk)
            assert await _read_exactly(reader, len(chunk)) == chunk.upper()
        request = up.requests[0]
        assert request.line == b"GET /ws HTTP/1.1"
        assert request.header(b"upgrade") == b"websocket"
        assert b"upgrade" in request.header(b"connection").lower()
        assert request.header(b"sec-websocket-key") == b"dGhlIHNhbXBsZSBub25jZQ=="
        writer.write_eof()  # the client closing ends the tunnel: the upstream sees EOF and closes
        assert await closed(reader)
    assert pool.idle_count() == 0  # a tunnelled connection never returns to the pool


async def test_upstream_closing_closes_the_client(env):
    start, clients, pool = env

    async def one_shot(up, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nbye")
        await writer.drain()
        writer.close()

    async with Upstream(one_shot) as up:
        proxy = await start(StubRouter({"chat": up.target}))
        reader, writer = await clients(proxy.port)
        writer.write(UPGRADE)
        assert (await read_response(reader, head_only=True)).status == 101
        assert await _read_exactly(reader, 3) == b"bye"
        assert await closed(reader)


async def test_a_refused_upgrade_is_an_ordinary_response_then_close(env):
    start, clients, pool = env
    async with Upstream(refuse) as up:
        proxy = await start(StubRouter({"chat": up.target}))
        reader, writer = await clients(proxy.port)
        writer.write(UPGRADE)
        resp = await read_response(reader)
        assert (resp.status, resp.body) == (403, b"no")
        assert await closed(reader)


async def test_other_upgrades_and_inbound_connect_stay_rejected(env):
    """(CONNECT on the outbound listener is a tunnel: tests/proxy/test_connect_tunnel.py.)"""
    start, clients, pool = env
    async with Upstream(keep_alive_echo) as up:
        outbound = await start(StubRouter({"chat": up.target}))
        inbound = await start(StubRouter({"chat": up.target}), Mode.INBOUND)
        for port, raw in ((inbound.port, b"CONNECT chat:443 HTTP/1.1\r\nHost: chat:443\r\n\r\n"),
                          (outbound.port, b"GET / HTTP/1.1\r\nHost: chat:9080\r\nConnection: Upgrade\r\n"
                                          b"Upgrade: h2c\r\n\r\n")):
            reader, writer = await clients(port)
            writer.write(raw)
            assert (await read_response(reader)).status == 400
        assert up.accepted == 0

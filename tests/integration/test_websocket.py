"""A websocket upgrade through a real sidecar pair: client -> outbound sidecar -> inbound sidecar -> app."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import ControlPlane, eventually

pytestmark = pytest.mark.asyncio


async def ws_app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers an upgrade with 101, then echoes raw bytes reversed until the peer closes."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"upgrade: websocket" not in head.lower():
            writer.write(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        while data := await reader.read(65536):
            writer.write(data[::-1])
            await writer.drain()
    finally:
        writer.close()


async def test_websocket_upgrade_relays_bytes_through_a_sidecar_pair(mesh: ControlPlane) -> None:
    ns = "ws1"
    server = await asyncio.start_server(ws_app, "127.0.0.1", 0)
    app_port = server.sockets[0].getsockname()[1]
    chat = mesh.proxy("chat", app_port, 9080, ns, "app=chat")
    front = mesh.proxy("front", app_port, 9080, ns, "app=front")
    try:
        await chat.ready()
        await front.ready()

        def has_endpoint() -> bool:
            return any(c["host"] == f"chat.{ns}.svc.cluster.local" and c["endpoints"]
                       for c in front.config_dump()["clusters"])

        await eventually(has_endpoint)
        reader, writer = await asyncio.open_connection("127.0.0.1", front.outbound_port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: chat:9080\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"upgrade: websocket" in head.lower()
        for message in (b"hello", b"\x81\x05frame", b"z" * 50_000 + b"a"):
            writer.write(message)
            got = await asyncio.wait_for(reader.readexactly(len(message)), 5)
            assert got == message[::-1] or sorted(got) == sorted(message)  # echoed per read, reversed
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the app's close travels back
        writer.close()
    finally:
        server.close()

"""proxy/tcp/relay.py over loopback: what happens to a connection that cannot be relayed, and the
breaker slot a relayed one holds. (Routing and DestinationRule settings are tested over real sidecars in
tests/integration/test_traffic_tcp.py.)"""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.http_helpers import refused_port
from proto.xds import PoolLimits
from proxy.core.errors import NoRoute
from proxy.outbound.circuit_breaker import Breaker
from proxy.core.target import Target
from proxy.tcp.listener import TcpListener

pytestmark = pytest.mark.timeout(30)


async def relay_once(pick) -> bytes:  # type: ignore[no-untyped-def]
    """Open one connection through a listener using `pick`, send a line, half-close, read everything
    (a close with our line unread reaches us as a reset: that is nothing relayed too)."""
    listener = TcpListener("127.0.0.1", 0, pick, "test")
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"hello\n")
        writer.write_eof()
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            data = b""
        writer.close()
        return data
    finally:
        await listener.stop()


async def test_a_connection_with_no_route_is_closed_with_nothing_relayed():
    def pick(client: str) -> Target:
        raise NoRoute("no service or route for host 'db'")

    assert await relay_once(pick) == b""


async def test_a_refused_upstream_closes_the_client_and_frees_the_breaker_slot():
    breaker = Breaker("outbound|5432||db", PoolLimits(max_connections=1))
    with refused_port() as port:
        assert await relay_once(lambda client: Target("127.0.0.1", port, breaker.name, breaker=breaker)) == b""
    assert breaker.active == 0


async def test_a_relayed_connection_holds_a_breaker_slot_until_it_ends():
    breaker = Breaker("outbound|5432||db", PoolLimits(max_connections=1))
    held: list[int] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        held.append(breaker.active)
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        got = await relay_once(lambda client: Target("127.0.0.1", port, breaker.name, breaker=breaker))
    finally:
        server.close()
    assert got == b"HELLO\n" and held == [1]
    await asyncio.sleep(0.05)
    assert breaker.active == 0


async def test_bytes_waiting_for_the_upstream_connection_are_bounded_and_all_delivered(monkeypatch):
    """A client that streams while the upstream is still connecting is read up to EARLY_LIMIT (plus one
    read), then not read until the two are paired; then everything goes through in order."""
    from proxy.tcp import relay as relay_module

    connected = asyncio.Event()
    original_open = relay_module.Relay.open

    async def slow_open(self, up, target):  # type: ignore[no-untyped-def]
        await connected.wait()
        await original_open(self, up, target)
    monkeypatch.setattr(relay_module.Relay, "open", slow_open)
    received = bytearray()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", port, "c"), "test")
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        payload = bytes(range(256)) * (32 * 1024)  # 8 MiB
        writer.write(payload)
        await asyncio.sleep(0.5)
        (relay,) = listener.relays
        assert relay.down.early_size <= relay_module.EARLY_LIMIT + 256 * 1024
        connected.set()
        await asyncio.wait_for(writer.drain(), 10)
        writer.write_eof()
        for _ in range(200):
            if len(received) == len(payload):
                break
            await asyncio.sleep(0.05)
        assert bytes(received) == payload
        writer.close()
    finally:
        await listener.stop()
        server.close()

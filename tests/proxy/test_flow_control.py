"""Backpressure: a slow reader on one side stops the proxy reading the other, so memory stays bounded."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_request

from proxy.http.flow import PEER_FULL, PIPELINE, ReadGate
from proxy.http.listener import serve
from proxy.http.upstream_pool import ConnectionPool

pytestmark = pytest.mark.timeout(30)

BOUND = 1 << 20  # what the proxy may hold for one slow side: its high-water mark plus a read or two


def _kernel_can_hold() -> int:
    """The most one loopback TCP hop's kernel buffers can soak up (receive + send maxima, autotuned): a payload
    larger than this cannot all leave its sender while the proxy reads nothing of it."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            with open(f"/proc/sys/net/ipv4/{name}") as f:
                total += int(f.read().split()[2])
        except (OSError, ValueError, IndexError):
            total += 8 << 20
    return total


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True


def test_read_gate_resumes_only_when_every_reason_to_pause_is_gone():
    transport = FakeTransport()
    gate = ReadGate(transport)  # type: ignore[arg-type]
    gate.pause(PIPELINE)
    gate.pause(PEER_FULL)
    assert not transport.reading
    gate.resume(PIPELINE)
    assert not transport.reading and gate.paused
    gate.resume(PIPELINE)  # resuming a reason not held is a no-op
    gate.resume(PEER_FULL)
    assert transport.reading and not gate.paused


def small_buffer_client_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # keep the kernel from soaking it up
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_client_that_does_not_read_stops_the_proxy_reading_the_upstream():
    # the proxy's upstream socket is not ours to shrink, and its receive buffer autotunes (tcp_rmem max, 32 MiB
    # here): 8 MiB once fitted in it whole and the upstream finished though the proxy had stopped reading
    payload = b"x" * (_kernel_can_hold() + (8 << 20))
    upstream_done = asyncio.Event()

    async def firehose(up, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
        writer.write(payload)
        await writer.drain()
        upstream_done.set()
        await reader.read()

    pool = ConnectionPool()
    async with Upstream(firehose) as up:
        proxy = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound")
        reader, writer = await asyncio.open_connection(sock=small_buffer_client_socket(proxy.port))
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        await asyncio.sleep(0.5)  # the client reads nothing meanwhile
        (conn,) = proxy.state.connections
        held = conn.transport.get_write_buffer_size()
        assert held < BOUND and not upstream_done.is_set()
        received = 0
        while received < len(payload):  # now read it all: everything still arrives
            received += len(await asyncio.wait_for(reader.read(1 << 20), 5))
        assert received >= len(payload)
        writer.close()
        await proxy.stop(grace=0.5)
        pool.close()


async def test_an_upstream_that_does_not_read_stops_the_proxy_reading_the_client():
    size = 8 << 20
    stop_reading = asyncio.Event()

    async def sluggish(up, reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        await stop_reading.wait()  # read nothing of the body until told
        remaining = size
        while remaining:
            remaining -= len(await reader.read(1 << 20))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    pool = ConnectionPool()
    async with Upstream(sluggish, rcvbuf=32 * 1024) as up:
        proxy = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound")
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: reviews\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(b"y" * size)
        await asyncio.sleep(0.5)
        (conn,) = proxy.state.connections
        assert conn.active is not None and conn.active.conn is not None
        assert conn.active.conn.transport.get_write_buffer_size() < BOUND
        assert conn.gate.paused  # the proxy stopped reading the client
        stop_reading.set()
        assert await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        assert not conn.gate.paused
        writer.close()
        await proxy.stop(grace=0.5)
        pool.close()


class SlowConnectPool(ConnectionPool):
    """A pool whose connects wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.let_through = asyncio.Event()

    async def connect(self, address: str, port: int):  # type: ignore[override]
        await self.let_through.wait()
        return await super().connect(address, port)


async def test_request_body_held_while_connecting_is_bounded_and_then_sent_whole():
    body = bytes(range(256)) * (2 << 12)  # 2 MiB
    pool = SlowConnectPool()
    async with Upstream(keep_alive_echo) as up:
        proxy = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound")
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: reviews\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await asyncio.sleep(0.3)
        (conn,) = proxy.state.connections
        assert conn.gate.paused and conn.active is not None and conn.active.pending_size < BOUND
        pool.let_through.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        echoed = await asyncio.wait_for(reader.readexactly(len(body)), 5)
        assert head.startswith(b"HTTP/1.1 200") and echoed == body
        writer.close()
        await proxy.stop(grace=0.5)
        pool.close()

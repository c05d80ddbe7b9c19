"""bench/dataplane/bare_proxy.py, the benchmark's bare pass-through: correct for the benchmark's traffic
(keep-alive GETs with fixed-size bodies) and never hanging on chunked responses or on a connection that
ends, whichever side ends it. On loopback, against a tiny upstream of our own; the proxy runs both
in-process (asyncio's loop) and as the benchmark runs it (`python -m bench.dataplane.bare_proxy`, uvloop)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from bench.dataplane.bare_proxy import Downstream, serve
from isthmus.launch import ManagedProcess, accepts, free_port, project_env

FIXED = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
WAIT = 5.0  # generous: every step takes milliseconds; a hang fails the test instead of stalling it


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers GET /fixed, /chunked and /until-close; keeps the connection open until the client's EOF
    (or after /until-close, whose body ends with the close)."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            path = head.split(b" ", 2)[1]
            if path == b"/until-close":
                writer.write(UNTIL_CLOSE)
                return
            writer.write(CHUNKED if path == b"/chunked" else FIXED)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture(params=["in-process", "uvloop process"])
async def proxy(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    origin_port = origin.sockets[0].getsockname()[1]
    if request.param == "in-process":
        server = await serve(0, origin_port)
        yield server.sockets[0].getsockname()[1]
        server.close()
    else:
        port = free_port()
        proc = ManagedProcess("bare-proxy", [sys.executable, "-m", "bench.dataplane.bare_proxy", "--port", str(port),
                                             "--upstream", str(origin_port)], env=project_env()).start()
        try:
            for _ in range(200):  # up to ~10 s on a loaded machine
                if accepts(port) or not proc.is_running:
                    break
                await asyncio.sleep(0.05)
            assert proc.is_running, f"the bare proxy exited with {proc.returncode}"
            yield port
        finally:
            proc.stop(2)
    origin.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench-backend:9080\r\n{extra}\r\n".encode()


async def read_exactly(reader: asyncio.StreamReader, expected: bytes) -> None:
    assert await asyncio.wait_for(reader.readexactly(len(expected)), WAIT) == expected


async def test_keep_alive_gets_with_fixed_bodies_share_one_connection(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    for _ in range(3):
        writer.write(get("/fixed"))
        await read_exactly(reader, FIXED)
    writer.write(get("/fixed") + get("/fixed"))  # pipelined
    await read_exactly(reader, FIXED + FIXED)
    writer.close()


async def test_a_chunked_response_passes_whole_and_the_connection_stays_usable(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/chunked"))
    await read_exactly(reader, CHUNKED)
    writer.write(get("/fixed"))
    await read_exactly(reader, FIXED)
    writer.close()


async def test_a_request_saying_connection_close_is_answered_then_the_proxy_closes(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/fixed", "Connection: close\r\n"))  # the upstream itself would keep the connection open
    assert await asyncio.wait_for(reader.read(), WAIT) == FIXED  # read() returns at EOF
    writer.close()


async def test_a_response_ended_by_the_upstreams_close_arrives_whole_then_eof(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/fixed") + get("/until-close"))
    assert await asyncio.wait_for(reader.read(), WAIT) == FIXED + UNTIL_CLOSE
    writer.close()


async def test_a_client_half_close_still_gets_its_response_then_eof(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/chunked"))
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), WAIT) == CHUNKED
    writer.close()


async def test_no_upstream_closes_the_client_instead_of_hanging() -> None:
    server = await serve(0, free_port())  # nothing listens there
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(get("/fixed"))
        try:
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        except ConnectionResetError:
            pass  # the proxy aborts: a reset is the expected way to learn it
        writer.close()
    finally:
        server.close()



class RecordingTransport:
    """The client side of a Downstream, without a socket: what the proxy writes to the client and does."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


async def test_bytes_and_eof_that_arrive_before_the_upstream_connection_wait_for_it() -> None:
    """uvloop may deliver a read right after connection_made although it paused reading (the smoke run's
    bare pair lost every connection that way): those bytes and a half-close reach the upstream once connected."""
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    try:
        down = Downstream(origin.sockets[0].getsockname()[1])
        client = RecordingTransport()
        down.connection_made(client)  # type: ignore[arg-type]
        down.data_received(get("/fixed") + get("/chunked"))  # before the upstream connection exists
        assert not client.reading  # held, and no more read until it can be forwarded
        down.eof_received()
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.05)
        assert bytes(client.written) == FIXED + CHUNKED
        assert client.closed  # the upstream got the half-close, answered, closed: so did the proxy
    finally:
        origin.close()

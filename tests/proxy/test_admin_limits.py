"""The admin port bounds what a local client can make it hold: the head's size and time, and connections."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import read_response

from proxy import admin
from proxy.admin import AdminServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server():
    srv = AdminServer("127.0.0.1", 0, lambda: True, dict, dict)
    await srv.start()
    assert srv.server is not None
    srv.port = srv.server.sockets[0].getsockname()[1]
    yield srv
    await srv.stop()


async def ask(port: int, data: bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await read_response(reader)
    finally:
        writer.close()


async def test_a_head_within_the_limit_is_served_and_one_over_gets_431(server):
    start = b"GET /ready HTTP/1.1\r\nX-Pad: "
    fits = start + b"p" * (admin.MAX_HEAD - len(start) - 4) + b"\r\n\r\n"
    assert len(fits) == admin.MAX_HEAD
    assert (await ask(server.port, fits)).status == 200
    over = start + b"p" * (admin.MAX_HEAD - len(start) - 3) + b"\r\n\r\n"
    assert (await ask(server.port, over)).status == 431


async def test_a_head_that_never_ends_gets_408(server, monkeypatch):
    monkeypatch.setattr(admin, "HEAD_TIMEOUT", 0.2)
    assert (await ask(server.port, b"GET /ready HTTP/1.1\r\n")).status == 408


async def test_connections_over_the_cap_are_closed_at_once(server, monkeypatch):
    monkeypatch.setattr(admin, "MAX_CONNECTIONS", 1)
    r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
    w1.write(b"GET /ready HTTP/1.1\r\n")  # holds the one slot
    await asyncio.sleep(0.1)
    r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(r2.read(), 5) == b""
    w1.write(b"\r\n")
    assert (await read_response(r1)).status == 200
    w1.close()
    w2.close()


@pytest.mark.parametrize("data", [b"GET /ready HTTP/1.1\n\n", b"GET /ready HTTP/1.1\r\nHost: a\n\r\n",
                                  b"GET /ready HTTP/1.1\r\nX: a\rb\r\n\r\n"], ids=["request-line", "header", "bare-cr"])
async def test_a_bare_lf_head_gets_400_at_once(server, monkeypatch, data):
    monkeypatch.setattr(admin, "HEAD_TIMEOUT", 20.0)  # the test's 30 s timeout fails it if the admin port waits
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert (await ask(server.port, data)).status == 400
    assert loop.time() - t0 < 3.0

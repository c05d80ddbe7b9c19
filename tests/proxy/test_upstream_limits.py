"""An upstream's response head is bounded like a client's request head: past the limits the sidecar closes
the upstream connection and answers 502 with Envoy's flag UPE. And the TCP relay holds only so much of
what a client sends before its upstream is connected."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, read_request, read_response

from proxy.core.access import AccessRecord
from proxy.http.upstream_pool import ConnectionPool
from proxy.tcp.relay import EARLY_LIMIT, Relay

pytestmark = pytest.mark.timeout(30)

GET = b"GET / HTTP/1.1\r\nHost: app.test:8080\r\n\r\n"


def answering(head: bytes):
    async def handler(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up.requests.append(await read_request(reader))
        writer.write(head + b"ok")
        await writer.drain()
        await reader.read()
    return handler


def response_head_of_size(size: int) -> bytes:
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: "
    head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    return head


@pytest.mark.parametrize("head, status", [
    (response_head_of_size(60 * 1024), 200),
    (response_head_of_size(60 * 1024 + 1), 502),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(99)) + b"\r\n", 200),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n", 502),
], ids=["60KiB", "60KiB+1", "100-headers", "101-headers"])
async def test_a_response_head_over_the_limits_is_a_502_upe(start_proxy, connect, head, status):
    records: list[AccessRecord] = []
    async with Upstream(answering(head)) as up:
        proxy = await start_proxy(StubRouter({"app.test": up.target}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(GET)
        resp = await read_response(reader)
        assert resp.status == status
        if status == 502:
            assert records[0].flag == "UPE" and b"upstream response" in resp.body
        else:
            assert resp.body == b"ok"


async def test_an_endless_response_head_is_cut_at_the_limit():
    async def endless(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(160):  # 10 MiB, unless the sidecar stops reading first
            writer.write(b"a" * 65536)
            await writer.drain()

    pool = ConnectionPool(max_head_bytes=8192)
    try:
        async with Upstream(endless) as up:
            from proxy.http.listener import serve

            listener = await serve("127.0.0.1", 0, StubRouter({"app.test": up.target}), pool, "outbound")
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(GET)
            assert (await read_response(reader)).status == 502
            writer.close()
            await listener.stop(grace=0.5)
    finally:
        pool.close()


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name, default=None):
        return default


async def test_tcp_bytes_sent_before_the_upstream_connects_are_held_up_to_a_bound():
    relay = Relay(lambda client: None, lambda relay: None)  # type: ignore[arg-type, return-value]
    down = relay.down
    transport = _FakeTransport()
    down.connection_made(transport)
    down.data_received(b"x" * EARLY_LIMIT)
    assert not transport.paused
    down.data_received(b"y")
    assert transport.paused  # no more is read until the upstream is there to take it
    assert down.early_size == EARLY_LIMIT + 1


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
], ids=["cl-and-te", "two-content-lengths"])
async def test_a_malformed_response_is_a_502_upe_not_a_reset(start_proxy, connect, head):
    """Envoy: an upstream protocol error (UPE), not a connection reset (UC 503)."""
    records: list[AccessRecord] = []
    async with Upstream(answering(head)) as up:
        proxy = await start_proxy(StubRouter({"app.test": up.target}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(GET)
        resp = await read_response(reader)
        assert resp.status == 502 and b"malformed" in resp.body
        assert records[0].flag == "UPE"

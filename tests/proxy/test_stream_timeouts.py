"""The per-connection timer's deadlines (Envoy's request_headers_timeout, request_timeout, stream_idle_timeout)
and the listener connection limit, with short configured values. Bounds are generous: each would fail
only if the feature were missing (the connection would stay open until the test's own timeout)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.proxy.http_helpers import (
    BOTH, RecordingApp, StubRouter, Upstream, closed, keep_alive_echo, read_request, read_response, recorded_logs,
)

from proxy.http.limits import Limits
from proxy.core.access import AccessRecord
from proxy.http.head import Mode

pytestmark = pytest.mark.timeout(30)

H = b"Host: app.test:8080\r\n"


def router_for(up: Upstream) -> StubRouter:
    return StubRouter({"app.test": up.target})


@BOTH
async def test_a_head_not_finished_in_time_gets_408_and_a_close(start_proxy, connect, mode):
    app = RecordingApp()
    async with app:
        proxy = await start_proxy(router_for(app), mode, limits=Limits(request_headers_timeout=0.3))
        reader, writer = await connect(proxy.port)
        t0 = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\n" + H)  # and never the blank line
        for _ in range(4):  # still sending, a byte at a time: activity does not extend a head's deadline
            await asyncio.sleep(0.1)
            writer.write(b"X")
        resp = await read_response(reader)
        assert resp.status == 408 and b"request headers" in resp.body
        assert await closed(reader)
        assert time.monotonic() - t0 < 3.0
    assert app.received == b""


@BOTH
async def test_a_body_trickling_in_gets_408_and_frees_the_upstream_connection(start_proxy, connect, mode):
    app = RecordingApp()
    async with app:
        limits = Limits(request_timeout=0.5, stream_idle_timeout=0)
        proxy = await start_proxy(router_for(app), mode, limits=limits)
        reader, writer = await connect(proxy.port)
        writer.write(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n")
        t0 = time.monotonic()
        answered = asyncio.ensure_future(read_response(reader))
        while not answered.done() and time.monotonic() - t0 < 5:
            writer.write(b"b")  # one byte every 50 ms: never idle, never done
            await asyncio.sleep(0.05)
        resp = await answered
        assert resp.status == 408 and b"request not received" in resp.body
        assert await closed(reader)
        await asyncio.wait_for(app.closed.wait(), 3)  # the upstream connection is gone too
        assert time.monotonic() - t0 < 3.0
    assert app.received.startswith(b"POST / HTTP/1.1")  # it was streaming: the app had the head


@BOTH
async def test_a_stream_with_no_activity_gets_408_flagged_si(start_proxy, connect, mode):
    records: list[AccessRecord] = []
    app = RecordingApp()  # reads the request, never answers
    async with app:
        proxy = await start_proxy(router_for(app), mode, on_complete=records.append,
                                  limits=Limits(stream_idle_timeout=0.3))
        reader, writer = await connect(proxy.port)
        t0 = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        resp = await read_response(reader)
        assert resp.status == 408 and b"stream idle" in resp.body
        assert await closed(reader)
        assert time.monotonic() - t0 < 3.0
        await asyncio.wait_for(app.closed.wait(), 3)
    assert [(r.status, r.flag) for r in records] == [(408, "SI")]


async def test_activity_keeps_a_slow_stream_alive(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), Mode.INBOUND, limits=Limits(stream_idle_timeout=0.3))
        reader, writer = await connect(proxy.port)
        writer.write(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 12\r\n\r\n")
        for _ in range(12):  # 1.2 s in all, four times the idle timeout, never 0.3 s quiet
            await asyncio.sleep(0.1)
            writer.write(b"x")
        resp = await read_response(reader)
        assert resp.status == 200 and resp.body == b"x" * 12


async def test_a_response_that_stalls_midway_is_cut(start_proxy, connect):
    async def half(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        await reader.read()

    async with Upstream(half) as up:
        proxy = await start_proxy(router_for(up), Mode.OUTBOUND, limits=Limits(stream_idle_timeout=0.3))
        reader, writer = await connect(proxy.port)
        writer.write(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        head = await read_response(reader, head_only=True)
        assert head.status == 200
        assert await reader.read(9) == b"only part"
        assert await closed(reader)


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_stream_timeouts(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        limits = Limits(stream_idle_timeout=0.2, request_headers_timeout=0.2, request_timeout=0.2)
        proxy = await start_proxy(router_for(up), Mode.INBOUND, limits=limits, keepalive_timeout=5.0)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /a HTTP/1.1\r\n" + H + b"\r\n")
        assert (await read_response(reader)).status == 200
        await asyncio.sleep(0.8)  # idle between requests: only the keep-alive timeout applies
        writer.write(b"GET /b HTTP/1.1\r\n" + H + b"\r\n")
        assert (await read_response(reader)).body == b"hello /b"


@BOTH
async def test_connections_over_the_listener_limit_are_closed_at_once(start_proxy, connect, mode):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), mode, limits=Limits(max_connections=2))
        first = [await connect(proxy.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await connect(proxy.port)
        assert await closed(reader)
        assert proxy.state.refused == 1
        for r, w in first:  # the two within the limit are served
            w.write(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
            assert (await read_response(r)).status == 200
        first[0][1].close()
        await asyncio.sleep(0.1)
        reader, writer = await connect(proxy.port)  # a slot is free again
        writer.write(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert (await read_response(reader)).status == 200


async def test_a_body_still_trickling_after_an_early_answer_is_cut_at_the_request_timeout(start_proxy, connect):
    async def answer_at_once(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only: answers before the body is in
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
        await writer.drain()
        await reader.read()

    async with Upstream(answer_at_once) as up:
        limits = Limits(request_timeout=0.5, stream_idle_timeout=0)
        proxy = await start_proxy(router_for(up), Mode.OUTBOUND, limits=limits)
        reader, writer = await connect(proxy.port)
        writer.write(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1000\r\n\r\n")
        t0 = time.monotonic()
        assert (await read_response(reader)).body == b"early"
        eof = asyncio.ensure_future(closed(reader))
        while not eof.done() and time.monotonic() - t0 < 5:
            writer.write(b"b")
            await asyncio.sleep(0.05)
        assert await eof
        assert time.monotonic() - t0 < 3.0


async def test_a_stalled_head_after_a_slow_request_on_the_same_connection_still_gets_408(start_proxy, connect):
    async def slow_echo(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.5)  # the connection's timer is armed while this request is busy
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with Upstream(slow_echo) as up:
        proxy = await start_proxy(router_for(up), Mode.INBOUND, limits=Limits(request_headers_timeout=0.3))
        reader, writer = await connect(proxy.port)
        writer.write(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert (await read_response(reader)).status == 200
        t0 = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\n" + H)  # and never the blank line
        assert (await read_response(reader)).status == 408
        assert time.monotonic() - t0 < 3.0


async def test_refused_connections_are_logged_at_most_once_per_interval(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(router_for(up), Mode.INBOUND, limits=Limits(max_connections=1))
        await connect(proxy.port)
        await asyncio.sleep(0.05)
        with recorded_logs() as logs:
            for _ in range(5):
                reader, _ = await connect(proxy.port)
                assert await closed(reader)
        assert proxy.state.refused == 5
        lines = [e for e in logs if e["event"] == "connection limit reached: new connections closed"]
        assert len(lines) == 1 and lines[0]["max_connections"] == 1


async def test_a_tcp_listener_closes_connections_over_its_limit_at_once():
    from proxy.core.target import Target
    from proxy.tcp.listener import TcpListener

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", port, "tcp-test"), "test",
                           max_connections=1)
    await listener.start()
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", listener.port)
        w1.write(b"ping")
        assert await asyncio.wait_for(r1.readexactly(4), 5) == b"ping"
        r2, w2 = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await closed(r2)
        assert listener.refused == 1
        w1.write(b"pong")  # the one within the limit is untouched
        assert await asyncio.wait_for(r1.readexactly(4), 5) == b"pong"
        w1.close()
        w2.close()
    finally:
        await listener.stop()
        server.close()

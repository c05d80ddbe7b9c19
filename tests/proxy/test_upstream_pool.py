"""The upstream connection pool: reuse, eviction, connect errors, and the one retry of a stale reuse."""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, closed, read_request, read_response, refused_port

from proxy.core.errors import UpstreamConnectError
from proxy.http.listener import serve
from proxy.http.upstream_pool import ConnectionPool
from proxy.core.conn_policy import ConnPolicy

pytestmark = pytest.mark.timeout(30)


async def hold_open(up, reader, writer) -> None:
    await reader.read()


async def close_at_once(up, reader, writer) -> None:
    writer.close()


async def test_a_released_connection_is_reused_for_the_same_endpoint_only():
    pool = ConnectionPool()
    async with Upstream(hold_open) as up:
        conn = await pool.connect("127.0.0.1", up.port)
        assert not conn.reused
        pool.release(conn)
        assert pool.take(("127.0.0.1", up.port + 1)) is None
        assert pool.take(("127.0.0.1", up.port)) is conn and conn.reused
        assert pool.take(("127.0.0.1", up.port)) is None
        pool.release(conn)
        pool.close()
        assert up.accepted == 1


async def test_a_connection_closed_by_the_peer_while_idle_is_dropped_from_the_pool():
    pool = ConnectionPool()
    async with Upstream(close_at_once) as up:
        conn = await pool.connect("127.0.0.1", up.port)
        pool.release(conn)
        for _ in range(100):
            if pool.idle_count() == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.idle_count() == 0 and conn.closed
        assert pool.take(("127.0.0.1", up.port)) is None


async def test_idle_connections_beyond_the_per_endpoint_maximum_are_closed():
    pool = ConnectionPool(max_idle_per_key=1)
    async with Upstream(hold_open) as up:
        first = await pool.connect("127.0.0.1", up.port)
        second = await pool.connect("127.0.0.1", up.port)
        pool.release(first)
        pool.release(second)
        assert pool.idle_count(("127.0.0.1", up.port)) == 1
        assert second.transport.is_closing() and not first.transport.is_closing()
        pool.close()


async def test_a_connection_idle_longer_than_the_idle_timeout_is_closed():
    pool = ConnectionPool(idle_timeout=0.1)
    async with Upstream(hold_open) as up:
        conn = await pool.connect("127.0.0.1", up.port)
        pool.release(conn)
        await asyncio.sleep(0.3)
        assert pool.idle_count() == 0 and conn.transport.is_closing()


async def test_a_refused_connect_raises_upstream_connect_error():
    with refused_port() as port, pytest.raises(UpstreamConnectError, match="refused"):
        await ConnectionPool().connect("127.0.0.1", port)


async def test_a_connect_that_does_not_complete_in_time_raises_upstream_connect_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept backlog so further SYNs go unanswered
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    try:
        with pytest.raises(UpstreamConnectError, match="timed out"):
            await ConnectionPool(connect_timeout=0.2).connect("127.0.0.1", port)
    finally:
        for s in (*fillers, listener):
            s.close()


async def test_a_reused_connection_the_server_closed_as_we_sent_is_retried_once_on_a_fresh_one(connect):
    async def answer_once_then_drop(up, reader, writer):
        up.requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive...
        await writer.drain()
        await read_request(reader)  # ...but the next request on it is dropped unanswered
        writer.transport.abort()

    pool = ConnectionPool()
    async with Upstream(answer_once_then_drop) as up:
        proxy = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound")
        reader, writer = await connect(proxy.port)
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
            resp = await read_response(reader)
            assert resp.status == 200 and resp.body == b"ok"
        await proxy.stop(grace=0.5)
        pool.close()
    assert up.accepted == 2


async def test_a_stale_reuse_is_not_retried_when_the_body_was_streamed_after_the_head(connect):
    async def answer_once_then_drop(up, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the head of the next request, then drop
        writer.transport.abort()

    pool = ConnectionPool()
    async with Upstream(answer_once_then_drop) as up:
        proxy = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound")
        reader, writer = await connect(proxy.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.write(b"POST / HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\n\r\n")  # body not yet sent
        resp = await read_response(reader)
        assert await closed(reader)
        await proxy.stop(grace=0.5)
        pool.close()
    assert resp.status == 503 and up.accepted == 1


async def test_a_cluster_policy_sets_tcp_keepalive_on_the_upstream_socket():
    """tcpKeepalive (DestinationRule connectionPool.tcp): SO_KEEPALIVE with the given idle, interval, probes."""
    pool = ConnectionPool()
    async with Upstream(hold_open) as up:
        conn = await pool.connect("127.0.0.1", up.port, policy=ConnPolicy("c", keepalive=(30, 5, 3)))
        sock = conn.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert [sock.getsockopt(socket.IPPROTO_TCP, opt) for opt in
                (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)] == [30, 5, 3]
        plain = await pool.connect("127.0.0.1", up.port)
        assert plain.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        conn.abort()
        plain.abort()


async def test_a_cluster_policy_pools_its_connections_apart_and_ages_them_out():
    """A ConnPolicy's connections are keyed by cluster; maxConnectionDuration retires one taken too late."""
    pool = ConnectionPool()
    async with Upstream(hold_open) as up:
        policy = ConnPolicy("outbound|80||a", max_duration=0.2)
        conn = await pool.connect("127.0.0.1", up.port, policy=policy)
        pool.release(conn)
        assert pool.take(("127.0.0.1", up.port)) is None  # not shared with clusters without the policy
        assert pool.take(policy.key("127.0.0.1", up.port)) is conn
        pool.release(conn)
        await asyncio.sleep(0.3)
        assert pool.take(policy.key("127.0.0.1", up.port)) is None and conn.closed

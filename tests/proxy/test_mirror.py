"""proxy/outbound/mirror.py and the exchange's mirroring: copies sent once the body is in hand, never waited on."""

from __future__ import annotations

import asyncio
import random

import pytest
from tests.proxy.http_helpers import Clients, StubRouter, Upstream, keep_alive_echo, read_response, stall

from proto import xds
from proxy.http import exchange
from proxy.http.head import Mode
from proxy.http.listener import serve
from proxy.http.upstream_pool import ConnectionPool
from proxy.outbound import mirror
from proxy.outbound.policy import compile_policy
from proxy.outbound.route import CompiledRule
from proxy.core.target import Target

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("host, shadow", [(b"reviews", b"reviews-shadow"), (b"reviews:9080", b"reviews-shadow:9080"),
                                          (b"[::1]:80", b"[::1]-shadow:80")])
def test_the_host_gets_the_shadow_suffix_before_its_port(host, shadow):
    assert mirror.shadow_host(host) == shadow
    headers = mirror.shadow_headers([(b"host", host), (b"connection", b"keep-alive"), (b"x", b"1")])
    assert headers == [(b"host", shadow), (b"x", b"1"), (b"connection", b"close")]


def test_percentages_choose_a_share_of_requests_and_unset_means_all():
    random.seed(7)
    policy = mirror.MirrorPolicy([xds.MirrorPolicy(host="a", percent=25.0), xds.MirrorPolicy(host="b")])
    picks = [policy.chosen() for _ in range(2000)]
    assert all(("b", "", None) in p for p in picks)
    assert 400 <= sum(("a", "", None) in p for p in picks) <= 600


def test_rules_without_mirrors_pay_nothing_and_bad_percentages_are_refused():
    assert mirror.from_rule(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")])) is None
    with pytest.raises(ValueError):
        CompiledRule(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")],
                                  mirrors=[xds.MirrorPolicy(host="m", percent=120.0)]))


class MirrorRouter(StubRouter):
    def __init__(self, target: Target, shadow: tuple[str, int]) -> None:
        super().__init__({"h": target})
        self.shadow = shadow

    def mirror_pick(self, host, subset, port, head):  # type: ignore[no-untyped-def]
        return (*self.shadow, None) if host == "m" else None  # (address, port, no TLS)


@pytest.fixture
async def mirrored(proxy_for):
    async def start(up: Upstream, shadow: Upstream):
        policy = compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")]),
                                mirror=mirror.MirrorPolicy([xds.MirrorPolicy(host="m")]))
        target = Target("127.0.0.1", up.port, "outbound|80||h", policy=policy)
        return await proxy_for(MirrorRouter(target, ("127.0.0.1", shadow.port)))

    return start


async def wait_for(check, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_a_copy_with_its_body_reaches_the_mirror_and_a_stalled_mirror_never_delays_the_response(mirrored):
    async with Upstream(keep_alive_echo) as up, Upstream(stall) as shadow:
        reader, writer = await mirrored(up, shadow)
        writer.write(b"POST /p HTTP/1.1\r\nHost: h:80\r\nContent-Length: 10\r\n\r\n")
        await asyncio.sleep(0.05)  # the body arrives after the request was routed
        writer.write(b"0123456789")
        resp = await asyncio.wait_for(read_response(reader), 2.0)
        assert resp.status == 200 and resp.body == b"0123456789"
        await wait_for(lambda: len(shadow.requests) == 1)
        copy = shadow.requests[0]
        assert copy.line.startswith(b"POST /p ") and copy.body == b"0123456789"
        assert copy.header(b"host") == b"h-shadow:80" and copy.header(b"connection") == b"close"
        writer.write(b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n")  # no body: copied at once
        assert (await asyncio.wait_for(read_response(reader), 2.0)).status == 200
        await wait_for(lambda: len(shadow.requests) == 2)
    assert exchange._mirror_copies == {}


async def test_a_mirror_that_refuses_connections_does_not_fail_the_request(mirrored):
    async with Upstream(keep_alive_echo) as up, Upstream(stall) as shadow:
        port = shadow.port
    async with Upstream(keep_alive_echo) as up:
        shadow_gone = Upstream(stall)
        shadow_gone.port = port  # nothing listens there any more
        reader, writer = await mirrored(up, shadow_gone)
        for _ in range(3):
            writer.write(b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n")
            assert (await asyncio.wait_for(read_response(reader), 2.0)).status == 200
    await wait_for(lambda: mirror.Shadows.in_flight == 0)


async def test_a_hundred_mirrored_requests_that_fail_in_every_way_leave_mirroring_working():
    """Each way a mirrored request or its copy can end frees what it held: an upload cut by the primary's
    failure, a client gone mid-body, a malformed body, a mirror that refuses. Then a copy still goes out."""
    pool = ConnectionPool(connect_timeout=2.0)
    clients = Clients()
    async with Upstream(keep_alive_echo) as up, Upstream(stall) as shadow:
        dead = Upstream(stall)
        async with dead:
            dead_port = dead.port  # nothing listens there afterwards
        policy = compile_policy(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")]),
                                mirror=mirror.MirrorPolicy([xds.MirrorPolicy(host="m")]))
        router = MirrorRouter(Target("127.0.0.1", dead_port, "outbound|80||h", policy=policy),
                              ("127.0.0.1", shadow.port))
        listener = await serve("127.0.0.1", 0, router, pool, Mode.OUTBOUND)
        try:
            for i in range(100):
                reader, writer = await clients(listener.port)
                kind = i % 3
                if kind == 0:  # the primary cannot be reached while the body is still coming: 503, closed
                    writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123")
                    assert (await read_response(reader)).status == 503
                elif kind == 1:  # the client leaves mid-body
                    writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123")
                    await asyncio.sleep(0)
                    writer.transport.abort()
                else:  # a malformed chunked body
                    writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                    await asyncio.wait_for(reader.read(), 5.0)  # answered (or not), then closed
            await wait_for(lambda: not exchange._mirror_copies)
            # copies that refuse: a mirror with nothing listening, a hundred times
            router.shadow = ("127.0.0.1", dead_port)
            router.routes["h"] = Target("127.0.0.1", up.port, "outbound|80||h", policy=policy)
            reader, writer = await clients(listener.port)
            for _ in range(100):
                writer.write(b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n")
                assert (await read_response(reader)).status == 200
            await wait_for(lambda: mirror.Shadows.in_flight == 0)
            router.shadow = ("127.0.0.1", shadow.port)
            writer.write(b"POST /ok HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok")
            assert (await read_response(reader)).status == 200
            await wait_for(lambda: any(r.line.startswith(b"POST /ok ") for r in shadow.requests))
        finally:
            await clients.close()
            await listener.stop(grace=0.5)
            pool.close()


async def early_answer(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers as soon as the head is in, before the request body."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()
    await reader.read()


async def test_a_response_that_ends_the_exchange_before_its_body_drops_the_copy(mirrored):
    """on_response_end releases inline (not through _release): a mirrored request answered early on a
    connection that closes after it frees its pending copy, and no copy goes out."""
    async with Upstream(early_answer) as up, Upstream(stall) as shadow:
        reader, writer = await mirrored(up, shadow)
        writer.write(b"POST /p HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 100\r\n\r\n0123")
        resp = await asyncio.wait_for(read_response(reader), 2.0)
        assert resp.status == 200 and resp.body == b"ok"
        await wait_for(lambda: not exchange._mirror_copies)
        await asyncio.sleep(0.05)
        assert shadow.requests == []

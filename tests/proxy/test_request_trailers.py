"""A chunked request's trailers: counted against the header limit and dropped (Envoy's HTTP/1 default), never
added to the request head that routing, policy, retries and the access log read after the body."""

from __future__ import annotations

from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_response

CHUNKED = (b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\nx-trailer: 1\r\nhost: evil\r\n\r\n")
NEXT = b"GET /b HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: t\r\n\r\n"


async def test_trailers_reach_neither_the_head_nor_the_next_request(start_proxy, connect) -> None:
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        writer.write(CHUNKED)
        first = await read_response(reader)
        writer.write(NEXT)  # same connection: the next head starts clean
        second = await read_response(reader)
    assert (first.status, first.body, second.status) == (200, b"abc", 200)
    one, two = router.heads
    for head in (one, two):
        names = [name for name, _ in head.headers]
        assert b"x-trailer" not in names and names.count(b"host") == 1, head.headers
    assert b"user-agent" in [name for name, _ in two.headers]
    assert all(b"evil" not in r.raw_head and b"x-trailer" not in r.raw_head.lower() for r in up.requests)


async def test_too_many_trailers_end_the_connection(start_proxy, connect) -> None:
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        many = b"".join(b"t%d: x\r\n" % i for i in range(500))
        writer.write(CHUNKED.replace(b"x-trailer: 1\r\n", many))
        got = await reader.read()  # whatever was answered, the connection is closed: the limit holds for trailers
        assert b"evil" not in got

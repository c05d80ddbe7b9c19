"""The HTTP/1.1 proxy end to end over real loopback sockets: raw client -> proxy -> tiny upstream."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from tests.proxy.http_helpers import (
    StubRouter, Upstream, chunked_reply, closed, http10_close, keep_alive_echo, read_request,
    read_response, refused_port, reset_on_request, stall,
)

from proxy.core.errors import NoHealthyUpstream
from proxy.core.access import AccessRecord
from proxy.http.head import Mode
from proxy.http.listener import serve
from proxy.core.target import Target

pytestmark = pytest.mark.timeout(30)


def get(path: bytes = b"/", host: bytes = b"reviews:9080", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra)


async def test_keep_alive_requests_reuse_one_upstream_connection(start_proxy, pool, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        for path in (b"/a", b"/b", b"/c"):
            writer.write(get(path))
            resp = await read_response(reader)
            assert resp.status == 200 and resp.body == b"hello " + path
        writer.close()
        reader2, writer2 = await connect(proxy.port)  # another client connection, same upstream
        writer2.write(get(b"/d"))
        assert (await read_response(reader2)).body == b"hello /d"
        writer2.close()
        assert up.accepted == 1
        assert pool.opened == 1


async def test_absolute_form_is_routed_by_its_url_and_sent_upstream_in_origin_form(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET http://reviews:9080/x?y=1 HTTP/1.1\r\nHost: ignored:1\r\n\r\n")
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 200
    head = router.heads[0]
    assert (head.method, head.host, head.port, head.path) == ("GET", "reviews", 9080, "/x?y=1")
    assert up.requests[0].line == b"GET /x?y=1 HTTP/1.1"
    assert up.requests[0].header(b"host") == b"reviews:9080"


async def test_each_request_on_a_connection_is_routed_by_its_own_host(start_proxy, connect):
    # the connection remembers the last Host it resolved: a different one (or a bad one) after it is read anew
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target, "ratings": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        statuses = []
        for host in (b"reviews:9080", b"reviews:9080", b"ratings", b"reviews:9080", b"reviews:9081"):
            writer.write(get(b"/", host))
            statuses.append((await read_response(reader)).status)
        writer.write(get(b"/", b"evil@reviews:9080"))
        statuses.append((await read_response(reader)).status)
        writer.close()
    assert statuses == [200] * 5 + [400]
    assert [(h.host, h.port) for h in router.heads] == [("reviews", 9080), ("reviews", 9080), ("ratings", 80),
                                                         ("reviews", 9080), ("reviews", 9081)]


async def test_host_header_names_the_destination_and_port_defaults_to_80(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"ratings": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        writer.write(get(b"/r", host=b"ratings"))
        assert (await read_response(reader)).status == 200
        writer.close()
    assert (router.heads[0].host, router.heads[0].port, router.heads[0].path) == ("ratings", 80, "/r")
    assert up.requests[0].line == b"GET /r HTTP/1.1"


async def test_inbound_mode_sends_origin_form_and_reads_host_from_the_header(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"app.local": up.target})
        proxy = await start_proxy(router, Mode.INBOUND)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET http://app.local:8080/p HTTP/1.1\r\nHost: app.local:8080\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.close()
    assert (router.heads[0].host, router.heads[0].port) == ("app.local", 8080)
    assert up.requests[0].line == b"GET /p HTTP/1.1"  # origin-form to the app, as from any sidecar


async def test_missing_host_in_http11_origin_form_is_400_and_closes(start_proxy, connect):
    proxy = await start_proxy(StubRouter({}))
    reader, writer = await connect(proxy.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    resp = await read_response(reader)
    assert resp.status == 400 and b"Host" in resp.body
    assert resp.header(b"connection") == b"close"
    assert await closed(reader)


async def test_connect_method_is_rejected_on_the_inbound_listener_with_a_clear_error_and_closed(start_proxy, connect):
    """(The outbound listener tunnels CONNECT: tests/proxy/test_connect_tunnel.py.)"""
    proxy = await start_proxy(StubRouter({}), Mode.INBOUND)
    reader, writer = await connect(proxy.port)
    writer.write(b"CONNECT reviews:443 HTTP/1.1\r\nHost: reviews:443\r\n\r\n")
    resp = await read_response(reader)
    assert resp.status == 400 and b"CONNECT is not supported" in resp.body
    assert await closed(reader)


async def test_unknown_host_gets_404_from_no_route_and_keeps_the_connection(start_proxy, connect):
    records: list[AccessRecord] = []
    proxy = await start_proxy(StubRouter({}), on_complete=records.append)
    reader, writer = await connect(proxy.port)
    writer.write(get(host=b"foo"))
    resp = await read_response(reader)
    assert resp.status == 404 and resp.body == b'no route for host "foo:80"\n'
    assert resp.header(b"content-type") == b"text/plain"
    writer.write(get(host=b"foo"))  # still usable: the request was complete
    assert (await read_response(reader)).status == 404
    writer.close()
    assert [(r.status, r.flag) for r in records] == [(404, "NR"), (404, "NR")]


async def test_no_healthy_upstream_gets_503_naming_the_cluster(start_proxy, connect):
    cluster = "outbound|9080|v3|reviews.default.svc.cluster.local"
    proxy = await start_proxy(StubRouter({"reviews": NoHealthyUpstream(f"no healthy upstream for cluster {cluster}")}))
    reader, writer = await connect(proxy.port)
    writer.write(get())
    resp = await read_response(reader)
    writer.close()
    assert resp.status == 503
    assert resp.body == f"no healthy upstream for cluster {cluster}\n".encode()
    assert resp.header(b"x-isthmus-flag") is None


async def test_refused_upstream_connect_gets_503_with_a_body(start_proxy, connect):
    records: list[AccessRecord] = []
    with refused_port() as port:
        proxy = await start_proxy(StubRouter({"reviews": Target("127.0.0.1", port, "c")}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(get())
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 503 and b"upstream connect error" in resp.body
    assert records[0].flag == "UF"


async def test_garbage_input_gets_400_and_the_connection_is_closed(start_proxy, connect):
    proxy = await start_proxy(StubRouter({}))
    reader, writer = await connect(proxy.port)
    writer.write(b"\x16\x03\x01 this is not http\r\n\r\n")
    resp = await read_response(reader)
    assert resp.status == 400 and resp.body.startswith(b"malformed request")
    assert await closed(reader)


async def test_http10_upstream_that_closes_reaches_an_http11_client_chunked(start_proxy, pool, connect):
    async with Upstream(http10_close) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get())
        resp = await read_response(reader)
        assert resp.status == 200 and resp.chunked
        assert resp.body == b"old school body until close"
        assert resp.line.startswith(b"HTTP/1.1 ")
        writer.write(get())  # the client connection stays usable; the upstream one was not pooled
        assert (await read_response(reader)).body == b"old school body until close"
        writer.close()
        assert up.accepted == 2 and pool.idle_count() == 0


async def test_http10_client_gets_the_body_unframed_and_the_connection_closed(start_proxy, connect):
    async with Upstream(chunked_reply) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"GET / HTTP/1.0\r\nHost: reviews\r\n\r\n")
        resp = await read_response(reader)
    assert resp.header(b"connection") == b"close" and not resp.chunked
    assert resp.body == b"hello chunks"


async def test_chunked_response_is_re_encoded_chunked(start_proxy, connect):
    async with Upstream(chunked_reply) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get() + get())
        first, second = await read_response(reader), await read_response(reader)
        writer.close()
    assert first.chunked and first.body == second.body == b"hello chunks"
    assert up.accepted == 1


async def test_chunked_request_body_is_streamed_to_upstream(start_proxy, connect):
    first_chunk_seen = asyncio.Event()

    async def handler(up, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert await reader.readuntil(b"\r\n") == b"5\r\n"
        assert await reader.readexactly(7) == b"first\r\n"
        first_chunk_seen.set()  # the proxy forwarded it before the client sent the rest
        rest = await reader.readuntil(b"0\r\n\r\n")
        assert rest == b"4\r\nlast\r\n0\r\n\r\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async with Upstream(handler) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await asyncio.wait_for(first_chunk_seen.wait(), 5)
        writer.write(b"4\r\nlast\r\n0\r\n\r\n")
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 200 and resp.body == b"ok"


async def test_response_body_reaches_the_client_before_the_upstream_finishes(start_proxy, connect):
    client_saw_first = asyncio.Event()

    async def handler(up, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await asyncio.wait_for(client_saw_first.wait(), 5)
        writer.write(b"world")
        await writer.drain()
        await reader.read()

    async with Upstream(handler) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get())
        await asyncio.wait_for(reader.readuntil(b"hello"), 5)
        client_saw_first.set()
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"world"
        writer.close()


async def test_a_5mb_body_is_streamed_both_ways_intact(start_proxy, connect):
    async def streaming_echo(up, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
        while length:
            piece = await reader.read(min(length, 65536))
            length -= len(piece)
            writer.write(piece)
            await writer.drain()
        await reader.read()

    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    async with Upstream(streaming_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)

        async def send() -> None:
            writer.write(b"POST /big HTTP/1.1\r\nHost: reviews\r\nContent-Length: %d\r\n\r\n" % len(payload))
            for i in range(0, len(payload), 256 * 1024):
                writer.write(payload[i:i + 256 * 1024])
                await writer.drain()

        sender = asyncio.create_task(send())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        digest, received = hashlib.sha256(), 0
        while received < len(payload):
            piece = await asyncio.wait_for(reader.read(1 << 20), 5)
            assert piece
            digest.update(piece)
            received += len(piece)
        await sender
        writer.close()
    assert received == len(payload)
    assert digest.digest() == hashlib.sha256(payload).digest()


async def test_pipelined_requests_are_answered_in_order(start_proxy, connect):
    async def slow_first(up, reader, writer):
        while True:
            req = await read_request(reader)
            path = req.line.split()[1]
            if path == b"/1":
                await asyncio.sleep(0.1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))

    async with Upstream(slow_first) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get(b"/1") + get(b"/2", host=b"nowhere") + get(b"/3"))
        bodies = [(await read_response(reader)).body for _ in range(3)]
        writer.close()
    assert bodies == [b"/1", b'no route for host "nowhere:80"\n', b"/3"]


async def test_a_request_answered_at_once_then_pipelined_ones_are_answered_in_order(start_proxy, connect):
    # The first starts straight from its head (nothing queued) and is answered before the next is parsed;
    # the rest of the same read then starts the same way, and the connection stays open after them.
    records: list[AccessRecord] = []
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(get(b"/1", host=b"nowhere") + get(b"/2") + get(b"/3", host=b"nowhere") + get(b"/4"))
        statuses = [(await read_response(reader)).status for _ in range(4)]
        writer.write(get(b"/5"))
        statuses.append((await read_response(reader)).status)
        writer.close()
    assert statuses == [404, 200, 404, 200, 200]
    assert [r.line.split()[1] for r in up.requests] == [b"/2", b"/4", b"/5"]
    assert [r.flag for r in records] == ["NR", "-", "NR", "-", "-"]


async def test_request_id_is_added_when_missing_and_kept_when_present(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get() + get(extra=b"X-Request-Id: mine-123\r\n") + get())
        for _ in range(3):
            await read_response(reader)
        writer.close()
    ids = [r.header(b"x-request-id") for r in up.requests]
    assert ids[1] == b"mine-123"
    assert ids[0] and ids[2] and ids[0] != ids[2]
    assert [r.headers.count((b"x-request-id", ids[1])) for r in up.requests[1:2]] == [1]


async def test_hop_by_hop_headers_are_not_forwarded(start_proxy, connect):
    async def handler(up, reader, writer):
        up.requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: timeout=5\r\n"
                     b"Connection: keep-alive, X-Up-Hop\r\nX-Up-Hop: 1\r\nX-End: 1\r\n\r\n")
        await reader.read()

    async with Upstream(handler) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get(extra=b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\n"
                               b"Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-End: 2\r\n"))
        resp = await read_response(reader)
        writer.close()
    sent = {name for name, _ in up.requests[0].headers}
    assert sent.isdisjoint({b"connection", b"x-hop", b"keep-alive", b"proxy-connection", b"te"})
    assert b"x-end" in sent
    got = {name for name, _ in resp.headers}
    assert got.isdisjoint({b"connection", b"x-up-hop", b"keep-alive"}) and b"x-end" in got


async def test_stalled_upstream_gets_504_when_a_response_timeout_is_set(start_proxy, connect):
    records: list[AccessRecord] = []
    async with Upstream(stall) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}), response_timeout=0.2,
                                  on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(get())
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 504 and b"timeout" in resp.body
    assert records[0].flag == "UT" and records[0].duration_ms >= 150


async def test_upstream_reset_before_a_response_gets_503(start_proxy, connect):
    records: list[AccessRecord] = []
    async with Upstream(reset_on_request) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(get())
        resp = await read_response(reader)
        writer.close()
    assert resp.status == 503 and records[0].flag == "UC"


async def test_upstream_closing_mid_body_closes_the_client_connection(start_proxy, connect):
    async def truncate(up, reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with Upstream(truncate) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        rest = await asyncio.wait_for(reader.read(), 5)
    assert rest == b"partial"  # then EOF: the client sees the truncation


async def test_head_and_204_responses_carry_no_body_and_keep_the_upstream(start_proxy, connect):
    async def handler(up, reader, writer):
        while True:
            req = await read_request(reader)
            if req.line.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with Upstream(handler) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        head = await read_response(reader, head_only=True)
        writer.write(get())
        no_content = await read_response(reader)
        writer.write(b"HEAD / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        again = await read_response(reader, head_only=True)
        writer.close()
    assert head.header(b"content-length") == b"42" and again.status == 200
    assert no_content.status == 204 and no_content.body == b""
    assert up.accepted == 1


async def test_connection_close_from_the_client_closes_after_the_response(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get(extra=b"Connection: close\r\n"))
        resp = await read_response(reader)
        assert resp.status == 200 and resp.header(b"connection") == b"close"
        assert await closed(reader)


async def test_expect_100_continue_is_answered_by_the_proxy(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"PUT / HTTP/1.1\r\nHost: reviews\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(b"data")
        resp = await read_response(reader)
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert resp.body == b"data" and up.requests[0].header(b"expect") is None


async def test_access_log_record_describes_the_request(start_proxy, connect):
    records: list[AccessRecord] = []
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(get(b"/log?x=1"))
        await read_response(reader)
        writer.close()
    (record,) = records
    assert (record.method, record.host, record.path, record.status, record.flag) == \
        ("GET", "reviews", "/log?x=1", 200, "-")
    assert record.cluster == up.target.cluster and record.bytes_sent == len(b"hello /log?x=1")


async def test_stop_lets_a_request_in_flight_finish(start_proxy, pool, connect):
    release = asyncio.Event()

    async def slow(up, reader, writer):
        await read_request(reader)
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
        await writer.drain()
        await reader.read()

    async with Upstream(slow) as up:
        proxy = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound")
        reader, writer = await connect(proxy.port)
        writer.write(get())
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(proxy.stop(grace=5))
        await asyncio.sleep(0.05)
        with pytest.raises(OSError):
            await connect(proxy.port)  # no longer accepting
        release.set()
        resp = await read_response(reader)
        await stopping
    assert resp.body == b"done" and resp.header(b"connection") == b"close"


async def test_idle_client_connection_is_closed_after_the_keepalive_timeout(start_proxy, connect):
    proxy = await start_proxy(StubRouter({}), keepalive_timeout=0.1)
    reader, writer = await connect(proxy.port)
    assert await closed(reader)


async def test_a_malformed_chunk_mid_body_gets_400_and_drops_the_upstream_exchange(start_proxy, connect):
    upstream_saw_end = asyncio.Event()

    async def handler(up, reader, writer):
        await reader.readuntil(b"5\r\nfirst\r\n")
        await reader.read()  # the proxy must give up on this exchange: EOF, not more body
        upstream_saw_end.set()

    async with Upstream(handler) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"zz\r\nnot a chunk\r\n")
        resp = await read_response(reader)
        assert resp.status == 400 and await closed(reader)
        await asyncio.wait_for(upstream_saw_end.wait(), 5)

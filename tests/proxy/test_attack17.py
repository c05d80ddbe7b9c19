"""Attacks on session 10's changes (9dc33b2..1cd3ad9), over loopback: trailing-whitespace stripping at
parse time, a chunked request's trailers kept out of the head, and the head guard's LF-count shortcut."""

from __future__ import annotations

import asyncio

import pytest

from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_request, read_response

pytestmark = pytest.mark.timeout(30)

HEAD = b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"


async def _proxy(start_proxy, connect, up):
    router = StubRouter({"reviews": up.target})
    proxy = await start_proxy(router)
    reader, writer = await connect(proxy.port)
    return router, reader, writer


async def _sink(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):  # takes whatever comes, answers nothing
        pass


async def test_a_trailer_value_without_end_is_bounded_in_bytes(start_proxy, connect) -> None:
    """A trailer line that never ends: llhttp's callbacks hand it over piece by piece and httptools joins the
    pieces until the line ends, so without a byte bound on trailers the listener holds all of it."""
    async with Upstream(_sink) as up:
        _, reader, writer = await _proxy(start_proxy, connect, up)
        writer.write(HEAD + b"0\r\nx-t: ")
        piece = b"a" * 16384
        closed = False
        for _ in range(64):  # 1 MiB, far past the 60 KiB head limit
            writer.write(piece)
            try:
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            await asyncio.sleep(0)
        if not closed:
            got = await asyncio.wait_for(reader.read(), 5)  # answered (431) and closed, or closed
            assert not got.startswith(b"HTTP/1.1 200"), got[:200]


async def test_trailers_then_a_pipelined_request_in_one_read(start_proxy, connect) -> None:
    async with Upstream(keep_alive_echo) as up:
        router, reader, writer = await _proxy(start_proxy, connect, up)
        writer.write(HEAD + b"0\r\nx-a: 1 \r\nhost: evil\r\n\r\n"
                     b"GET /b HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        first = await read_response(reader)
        second = await read_response(reader)
    assert (first.status, first.body, second.status) == (200, b"abc", 200)
    assert [h.path for h in router.heads] == ["/a", "/b"]
    assert [len(h.headers) for h in router.heads][1] == 2  # host and the x-request-id we add
    assert all(b"evil" not in r.raw_head for r in up.requests)


async def test_trailers_split_at_every_byte(start_proxy, connect) -> None:
    async with Upstream(keep_alive_echo) as up:
        router, reader, writer = await _proxy(start_proxy, connect, up)
        tail = b"0\r\nx-a: 1 \r\nhost: evil\r\n\r\n"
        writer.write(HEAD)
        for i in range(len(tail)):
            writer.write(tail[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0.001)
        first = await read_response(reader)
        writer.write(b"GET /b HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        second = await read_response(reader)
    assert (first.status, second.status) == (200, 200)
    assert all(b"evil" not in r.raw_head for r in up.requests)
    assert [n for n, _ in router.heads[1].headers].count(b"host") == 1


@pytest.mark.parametrize("te", [b"chunked\t", b"chunked \t", b"chunked\t "])
async def test_a_transfer_encoding_llhttp_does_not_take_as_chunked_never_goes_upstream(start_proxy, connect,
                                                                                      te) -> None:
    """`chunked\\t`: llhttp calls on_headers_complete, then refuses the head (it reads the coding as not chunked);
    our strip reads it as chunked. The head must not have gone upstream framed as chunked."""
    async with Upstream(keep_alive_echo) as up:
        _, reader, writer = await _proxy(start_proxy, connect, up)
        writer.write(b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: " + te + b"\r\n\r\n"
                     b"3\r\nabc\r\n0\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 5)
        await asyncio.sleep(0.2)
    assert got.startswith(b"HTTP/1.1 400"), got[:200]
    assert up.requests == [], [r.raw_head for r in up.requests]


@pytest.mark.parametrize("raw", [
    # a body ending in CRLF CRLF in the read that holds the head
    b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 4\r\n\r\n\r\n\r\n",
    # a pipelined second head in the same read
    b"GET /a HTTP/1.1\r\nHost: reviews:9080\r\n\r\nGET /b HTTP/1.1\r\nHost: reviews:9080\r\nX-Smuggled: 1\r\n\r\n",
    # a body that is itself a head
    b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 39\r\n\r\n"
    b"GET /b HTTP/1.1\r\nHost: reviews:9080\r\n\r\n",
    # Content-Length with trailing whitespace: forwarded as received, the upstream must read the same length
    b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 3 \r\n\r\nabc",
    b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 3 \t\r\n\r\nabc",
])
async def test_the_upstream_reads_the_framing_we_parsed(start_proxy, connect, raw) -> None:
    async with Upstream(keep_alive_echo) as up:
        router, reader, writer = await _proxy(start_proxy, connect, up)
        writer.write(raw)
        n = raw.count(b" HTTP/1.1\r\n") if b"Content-Length" not in raw else 1
        for _ in range(n):
            assert (await read_response(reader)).status == 200
        await asyncio.sleep(0.1)
    assert len(up.requests) == n == len(router.heads)
    for head, req in zip(router.heads, up.requests):
        assert req.raw_head.count(b"\n") == len(head.headers) + 2, req.raw_head


async def test_chunk_data_in_reads_after_its_size_line_is_no_trailer(start_proxy, connect) -> None:
    """The trailer bound counts only reads without chunk data: a big chunk whose size line came in a read of its
    own, and a last chunk and short trailers in reads of their own, still go through."""
    async with Upstream(keep_alive_echo) as up:
        _, reader, writer = await _proxy(start_proxy, connect, up)
        data = bytes(range(256)) * 768  # 192 KiB, past the 60 KiB head limit
        writer.write(b"POST /a HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"%x\r\n" % len(data), *(data[i:i + 8192] for i in range(0, len(data), 8192)), b"\r\n",
                      b"0\r\n", b"x-a: 1\r\n", b"x-b: 2\r\n", b"\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.002)
        response = await read_response(reader)
    assert (response.status, response.body) == (200, data)


@pytest.mark.parametrize("bad", [
    b"Transfer-Encoding: chunked\t\r\n\r\n3\r\nabc\r\n0\r\n\r\n",  # llhttp: headers complete, then refused
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",  # a bad chunk size after the head went
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx: \x01\r\n\r\n",  # a bad trailer
])
async def test_a_request_refused_after_its_head_never_leaves_a_pooled_connection_mid_body(start_proxy, connect,
                                                                                          bad) -> None:
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        writer.write(b"GET /warm HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        assert (await read_response(reader)).status == 200  # the pool holds a connection now
        writer.write(b"POST /bad HTTP/1.1\r\nHost: reviews:9080\r\n" + bad)
        got = await asyncio.wait_for(reader.read(), 5)
        assert not got.startswith(b"HTTP/1.1 200"), got[:200]
        reader2, writer2 = await connect(proxy.port)
        writer2.write(b"GET /next HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        next_ = await read_response(reader2)
    assert next_.status == 200
    assert [r.line.split()[1] for r in up.requests if r.line.split()[1] != b"/bad"] == [b"/warm", b"/next"]


def _replier(head: bytes):
    async def handler(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            up.requests.append(await read_request(reader))
            writer.write(head)
            await writer.drain()
    return handler


_INTERIM = b"HTTP/1.1 100 Continue\r\n\r\n"  # a 1xx first: the final head is rebuilt, not forwarded


@pytest.mark.parametrize("first", [b"", _INTERIM])
@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5 \r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5 \t \r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close \r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nConnection: x-hop \t\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\nhello",
    # trailers of a chunked response: not held (the upstream parser takes no header callbacks), not forwarded
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: " + b"a" * 300_000 + b"\r\n\r\n",
])
async def test_a_response_head_with_trailing_whitespace_frames_as_parsed(start_proxy, connect, first, head) -> None:
    async with Upstream(_replier(first + head)) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        for path in (b"/1", b"/2"):  # the second on the same connections: the first's framing ended where it did
            writer.write(b"GET %s HTTP/1.1\r\nHost: reviews:9080\r\n\r\n" % path)
            response = await asyncio.wait_for(read_response(reader), 5)
            assert (response.status, response.body) == (200, b"hello"), response
            names = [n for n, _ in response.headers]
            assert b"x-hop" not in names and b"x-t" not in names
            assert all(v == v.rstrip(b" \t") for _, v in response.headers) or not first, response.headers


async def _until_closed(reader: asyncio.StreamReader, t0: float, limit: float = 5.0) -> float:
    await asyncio.wait_for(reader.read(), limit)
    return asyncio.get_running_loop().time() - t0


async def test_idle_clocks_start_at_each_responses_end(connect) -> None:
    """One loop.time() at a response's end stamps the pool's idle clock and the client connection's: both still
    time out at their configured idle timeouts, counted from the last response, not the first."""
    from proxy.http.listener import serve
    from proxy.http.upstream_pool import ConnectionPool

    closes: list[float] = []

    async def echo_then_note_close(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await keep_alive_echo(up, reader, writer)
        finally:
            closes.append(asyncio.get_running_loop().time())

    pool = ConnectionPool(idle_timeout=0.6)
    loop = asyncio.get_running_loop()
    async with Upstream(echo_then_note_close) as up:
        listener = await serve("127.0.0.1", 0, StubRouter({"reviews": up.target}), pool, "outbound",
                               keepalive_timeout=0.6)
        try:
            reader, writer = await connect(listener.port)
            for path in (b"/1", b"/2"):
                writer.write(b"GET %s HTTP/1.1\r\nHost: reviews:9080\r\n\r\n" % path)
                assert (await read_response(reader)).status == 200
                ended = loop.time()
                await asyncio.sleep(0.4)  # 0.8 s after the first response in all: idle only 0.4 s
            assert not closes and up.accepted == 1
            idle = await _until_closed(reader, ended)
            for _ in range(40):
                if closes:
                    break
                await asyncio.sleep(0.05)
        finally:
            await listener.stop(grace=0.5)
            pool.close()
    assert 0.55 <= idle < 1.6, idle
    assert closes and 0.55 <= closes[0] - ended < 1.6, (closes, ended)


@pytest.mark.parametrize("line", [
    b"Host: reviews:9080\r\nX-A: a\x00b",  # NUL and other controls: llhttp refuses the head
    b"Host: reviews:9080\r\nX-A: a\x0b",
    b"Host: reviews:9080\r\nX-A: a\x7f",
    b"Host: reviews:9080\r\nX-A: a\r\n b",  # obs-fold
    b"Host: reviews:9080\nX-A: b",  # a bare LF
    b"Host: reviews:9080\r\nX-A: b\rX-B: c",  # a bare CR
    b"Host:    ",  # a Host of only spaces: empty
    b"Host: \t \t",
    b"Host: reviews:9080\r\nContent-Length: 3\r\nContent-Length: 3 ",  # duplicated, one with OWS
    b"Host: reviews:9080\r\nContent-Length: 3 \r\nTransfer-Encoding: chunked ",
])
async def test_a_head_llhttp_or_we_refuse_never_goes_upstream(start_proxy, connect, line) -> None:
    async with Upstream(keep_alive_echo) as up:
        _, reader, writer = await _proxy(start_proxy, connect, up)
        writer.write(b"POST /a HTTP/1.1\r\n" + line + b"\r\n\r\nabc")
        got = await asyncio.wait_for(reader.read(), 5)
        await asyncio.sleep(0.1)
    assert got.startswith(b"HTTP/1.1 400"), got[:200]
    assert up.requests == []


@pytest.mark.parametrize("split", range(1, 12))
async def test_a_value_split_right_before_its_trailing_whitespace(start_proxy, connect, split) -> None:
    """The strip sees the value httptools joined, wherever the reads split it."""
    async with Upstream(keep_alive_echo) as up:
        router, reader, writer = await _proxy(start_proxy, connect, up)
        head = b"GET /a HTTP/1.1\r\nHost: reviews:9080 \t\r\nX-A: v \t \r\n\r\n"
        at = head.index(b"9080") + 4 if split == 1 else head.index(b"v \t") + split - 1
        writer.write(head[:at])
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(head[at:])
        assert (await read_response(reader)).status == 200
    assert router.heads[0].header(b"x-a") == b"v" and router.heads[0].host == "reviews"


async def test_trailers_refused_mid_body_leave_no_half_sent_request_in_the_pool(start_proxy, connect) -> None:
    async with Upstream(keep_alive_echo) as up:
        router, reader, writer = await _proxy(start_proxy, connect, up)
        writer.write(b"GET /warm HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.write(HEAD)
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n")
        await asyncio.sleep(0.05)
        try:
            for _ in range(8):
                writer.write(b"x-t: " + b"a" * 16384)
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            pass
        got = await asyncio.wait_for(reader.read(), 5)
        assert got.startswith(b"HTTP/1.1 431"), got[:200]
        reader2, writer2 = await connect((await start_proxy(router)).port)
        writer2.write(b"GET /next HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        assert (await read_response(reader2)).status == 200
    assert [r.line.split()[1] for r in up.requests] == [b"/warm", b"/next"]


@pytest.mark.parametrize("first", [b"", _INTERIM])
@pytest.mark.parametrize("te", [b"chunked\t", b"chunked \t", b"chunked\t "])
async def test_a_response_coding_llhttp_does_not_take_as_chunked_is_refused(start_proxy, connect, first, te) -> None:
    """llhttp takes `chunked` with trailing spaces as chunked, but not with a tab: it then reads the body until the
    upstream closes. Stripped, the value read as chunked, and the client got the upstream's chunk framing as the
    body of a response of ours that ended only with the upstream's close (truncated). Refused instead (502)."""
    async with Upstream(_replier(first + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + b"\r\n\r\n"
                                 b"5\r\nhello\r\n0\r\n\r\n")) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        response = await asyncio.wait_for(read_response(reader), 5)
    assert response.status == 502, response

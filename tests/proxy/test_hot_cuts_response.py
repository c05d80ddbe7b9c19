"""The response side's memos (issue 15, ninth session) attacked over real loopback sockets: response_head.scan's
memo of the head answered last and each upstream connection's own (proxy/http/upstream.py), with heads that
differ from the remembered one only slightly, or not at all but for what the request was."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, read_request, read_response

from proxy.http.response_head import scan

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"


def scripted(answers: dict[bytes, list[bytes]]):  # type: ignore[no-untyped-def]
    """An upstream answering each request path with its list of writes (a short pause between two)."""
    async def handler(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            up.requests.append(request)
            for i, piece in enumerate(answers[request.line.split()[1]]):
                if i:
                    await writer.drain()
                    await asyncio.sleep(0.01)
                writer.write(piece)
            await writer.drain()
    return handler


ANSWERS = {
    b"/ok": [OK + b"hello"],
    b"/longer-body": [OK.replace(b"5", b"7") + b"hello!!"],
    b"/more": [OK[:-2] + b"X-After: 1\r\n\r\nhello"],
    b"/204": [OK.replace(b"200 OK", b"204 No Content")],
    b"/304": [OK.replace(b"200 OK", b"304 Not Modified")],
    b"/head": [OK],  # the answer to HEAD: the same head, no body
    b"/interim": [b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"hello"],
    b"/interim-split": [b"HTTP/1.1 100 Continue\r\n\r\n", OK + b"hello"],
    b"/chunked": [OK.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n"],
    b"/split": [OK[:20], OK[20:] + b"hel", b"lo"],
    b"/split-at-end": [OK[:-1], OK[-1:] + b"hello"],
    b"/hop": [OK[:-2] + b"Connection: keep-alive, x-secret\r\nX-Secret: s\r\n\r\nhello"],
    b"/close": [OK[:-2] + b"Connection: close\r\n\r\nhello"],
}


def request(path: bytes, method: bytes = b"GET") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: reviews\r\n\r\n" % (method, path)


async def test_heads_that_differ_little_from_the_remembered_one_are_each_forwarded_as_they_are(start_proxy, pool,
                                                                                            connect, monkeypatch):
    from proxy.http import upstream

    scans = []
    monkeypatch.setattr(upstream, "scan", lambda data, *args: scans.append(data) or scan(data, *args))
    seen = []
    async with Upstream(scripted(ANSWERS)) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)

        async def ask(path: bytes, method: bytes = b"GET") -> None:
            writer.write(request(path, method))
            resp = await read_response(reader, head_only=method == b"HEAD")
            seen.append((path, method, resp.status, resp.header(b"content-length"), resp.header(b"x-after"),
                         resp.header(b"x-secret"), resp.body))

        plan = [b"/ok"] * 3 + [b"/longer-body", b"/ok", b"/more", b"/ok", b"/ok", b"/204", b"/ok", b"/ok", b"/304",
                               b"/ok", b"/ok", b"/interim", b"/ok", b"/ok", b"/interim-split", b"/ok", b"/chunked",
                               b"/ok", b"/split", b"/split-at-end", b"/ok", b"/hop", b"/hop", b"/hop", b"/ok"]
        for path in plan[:8]:
            await ask(path)
        await ask(b"/head", b"HEAD")  # the very head of /ok remembered, answering a HEAD request: no body
        await ask(b"/ok")
        for path in plan[8:]:
            await ask(path)
        await ask(b"/close")
        await ask(b"/ok")  # on a new upstream connection
    expected = {
        b"/ok": (200, b"5", None, None, b"hello"), b"/longer-body": (200, b"7", None, None, b"hello!!"),
        b"/more": (200, b"5", b"1", None, b"hello"), b"/204": (204, b"5", None, None, b""),
        b"/304": (304, b"5", None, None, b""), b"/head": (200, b"5", None, None, b""),
        b"/interim": (200, b"5", None, None, b"hello"), b"/interim-split": (200, b"5", None, None, b"hello"),
        b"/chunked": (200, None, None, None, b"hello"), b"/split": (200, b"5", None, None, b"hello"),
        b"/split-at-end": (200, b"5", None, None, b"hello"), b"/hop": (200, b"5", None, None, b"hello"),
        b"/close": (200, b"5", None, None, b"hello"),
    }
    assert [s[2:] for s in seen] == [expected[path] for path, *_ in seen]
    assert len(seen) == len(plan) + 4
    assert up.accepted == 2 and pool.opened == 2  # one kept alive throughout, one after `Connection: close`
    assert len(scans) < len(seen) - 10  # most /ok heads were answered by the connection's memo, without scan


async def test_two_upstream_connections_alternating_their_heads_each_get_their_own(start_proxy, connect):
    a_head = b"HTTP/1.1 200 OK\r\nServer: a\r\nContent-Length: 1\r\n\r\n"
    b_head = b"HTTP/1.1 200 OK\r\nServer: b\r\nContent-Length: 2\r\n\r\n"
    async with Upstream(scripted({b"/": [a_head + b"a"]})) as a, Upstream(scripted({b"/": [b_head + b"bb"]})) as b:
        proxy = await start_proxy(StubRouter({"a": a.target, "b": b.target}))
        reader, writer = await connect(proxy.port)
        got = []
        for host in [b"a", b"b"] * 6 + [b"a", b"a", b"b", b"b"]:
            writer.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
            resp = await read_response(reader)
            got.append((host, resp.header(b"server"), resp.body))
    assert all(server == host and body == {b"a": b"a", b"b": b"bb"}[host] for host, server, body in got)
    assert a.accepted == 1 and b.accepted == 1


async def test_a_head_request_answered_with_a_body_does_not_leave_it_for_the_next_answer(start_proxy, connect):
    # the remembered head answering a HEAD, with a body after it in the same read (or a second head): whatever the
    # proxy makes of the HEAD, the client's next request gets its own answer, not those bytes
    for extra in (b"hello", OK + b"hello"):
        answers = {b"/ok": [OK + b"hello"], b"/head": [OK + extra], b"/next": [OK.replace(b"5", b"4") + b"next"]}
        async with Upstream(scripted(answers)) as up:
            proxy = await start_proxy(StubRouter({"reviews": up.target}))
            reader, writer = await connect(proxy.port)
            for _ in range(3):
                writer.write(request(b"/ok"))
                assert (await read_response(reader)).body == b"hello"
            writer.write(request(b"/head", b"HEAD"))
            status = (await read_response(reader, head_only=True)).status
            assert status in (200, 502)
            if status == 200:
                writer.write(request(b"/next"))
                resp = await read_response(reader)
                assert resp.status == 200 and resp.body == b"next"

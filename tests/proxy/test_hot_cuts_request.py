"""The request side's instruction cuts (issue 15, ninth session) attacked over real loopback sockets: the
connection's Host memo, the GET fast path and the request line read by index, x-request-id batches, and the
exchange / request head made as `object.__new__` + `init` (proxy/http/server.py, proxy/http/head.py)."""

from __future__ import annotations

import asyncio
import re

import pytest
from tests.proxy.fork_helpers import from_forked_child
from tests.proxy.http_helpers import StubRouter, Upstream, closed, keep_alive_echo, read_request, read_response

from proxy.core.access import AccessRecord
from proxy.core.request import RequestHead
from proxy.http import head as head_module
from proxy.http import server
from proxy.http.exchange import Exchange
from proxy.http.head import Mode, new_request_id

pytestmark = pytest.mark.timeout(60)

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def get(path: bytes = b"/", host: bytes | None = b"reviews:9080", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    host_line = b"" if host is None else b"Host: %s\r\n" % host
    return b"GET %s HTTP/%s\r\n%s%s\r\n" % (path, version, host_line, extra)


# --- the connection's Host memo ----------------------------------------------------------------------------


async def test_every_request_on_a_connection_is_routed_by_its_own_host_whatever_came_before(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target, "REVIEWS": up.target, "reviews.": up.target,
                             "ratings": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        hosts = [b"reviews:9080", b"reviews:9080", b"REVIEWS:9080", b"reviews:9081", b"reviews", b"reviews.:9080",
                 b"reviews:9080"]
        for host in hosts:
            writer.write(get(b"/", host))
            assert (await read_response(reader)).status == 200
        # absolute-form after the memo holds reviews:9080: the target's authority wins (RFC 9112 3.2.2)
        writer.write(get(b"http://ratings:1234/abs", b"reviews:9080"))
        assert (await read_response(reader)).status == 200
        writer.write(get(b"/again", b"reviews:9080"))
        assert (await read_response(reader)).status == 200
        # an HTTP/1.0 request with the same Host: served, then closed
        writer.write(get(b"/old", b"reviews:9080", version=b"1.0"))
        assert (await read_response(reader)).status == 200
        assert await closed(reader)
    assert [(h.host, h.port) for h in router.heads] == [
        ("reviews", 9080), ("reviews", 9080), ("REVIEWS", 9080), ("reviews", 9081), ("reviews", 80),
        ("reviews.", 9080), ("reviews", 9080), ("ratings", 1234), ("reviews", 9080), ("reviews", 9080)]
    assert up.requests[7].header(b"host") == b"ratings:1234" and up.requests[7].line == b"GET /abs HTTP/1.1"
    assert up.requests[8].header(b"host") == b"reviews:9080"


async def test_no_host_after_a_host_on_the_same_connection_is_400(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(get())
        assert (await read_response(reader)).status == 200
        writer.write(get(b"/x", None))
        assert (await read_response(reader)).status == 400
        assert await closed(reader)
    assert len(up.requests) == 1


async def test_inbound_absolute_form_naming_another_host_than_the_remembered_one_is_400(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}), Mode.INBOUND)
        reader, writer = await connect(proxy.port)
        writer.write(get())
        assert (await read_response(reader)).status == 200
        writer.write(get(b"http://ratings:9080/x", b"reviews:9080"))
        assert (await read_response(reader)).status == 400
    assert len(up.requests) == 1


async def test_a_route_push_between_two_requests_on_one_connection_takes_effect_at_once(start_proxy, connect):
    async with Upstream(keep_alive_echo) as one, Upstream(keep_alive_echo) as two:
        router = StubRouter({"reviews": one.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        writer.write(get(b"/1"))
        assert (await read_response(reader)).status == 200
        router.routes = {"reviews": two.target}  # what a config push does to the routes
        writer.write(get(b"/2"))
        assert (await read_response(reader)).status == 200
        router.routes = {}
        writer.write(get(b"/3"))
        assert (await read_response(reader)).status == 404
    assert [r.line for r in one.requests] == [b"GET /1 HTTP/1.1"]
    assert [r.line for r in two.requests] == [b"GET /2 HTTP/1.1"]


# --- the request line: the GET fast path, origin-form by index, HTTP/1.1 by a slice ------------------------


@pytest.mark.parametrize("line", [b"GETX / HTTP/1.1", b"get / HTTP/1.1", b"GET\t/ HTTP/1.1", b"GET /a\x00b HTTP/1.1",
                                  b"GET /a#frag HTTP/1.1", b"GET / HTTP/1.1 ", b"GET / HTTP/2.0"])
async def test_a_bad_request_line_is_a_400_that_reaches_no_upstream(start_proxy, connect, line):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(line + b"\r\nHost: reviews:9080\r\n\r\n")
        resp = await read_response(reader)
        assert resp.status in (400, 505) and await closed(reader)
    assert not up.requests


async def test_each_method_is_named_as_sent_and_odd_targets_go_upstream_as_sent(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        methods = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"PROPFIND", b"PURGE"]
        for method in methods:
            writer.write(b"%s /m HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 0\r\n\r\n" % method)
            assert (await read_response(reader, head_only=method == b"HEAD")).status == 200
        for target in (b"/a%00b", b"/p?q=%23x&r=/../admin", b"*"):
            writer.write(b"OPTIONS %s HTTP/1.1\r\nHost: reviews:9080\r\n\r\n" % target)
            assert (await read_response(reader)).status == 200
    assert [h.method for h in router.heads[:len(methods)]] == [m.decode() for m in methods]
    assert [r.line.split()[0] for r in up.requests[:len(methods)]] == methods
    assert [h.path for h in router.heads[len(methods):]] == ["/a%00b", "/p?q=%23x&r=/../admin", "*"]
    assert [r.line for r in up.requests[len(methods):]] == [
        b"OPTIONS /a%00b HTTP/1.1", b"OPTIONS /p?q=%23x&r=/../admin HTTP/1.1", b"OPTIONS * HTTP/1.1"]


@pytest.mark.parametrize("line", [b"GET  /x HTTP/1.1", b"GET /x  HTTP/1.1", b"GET /x RTSP/1.1"])
async def test_a_request_line_llhttp_tolerates_goes_upstream_canonical_not_as_received(start_proxy, connect, line):
    # llhttp takes extra spaces and an RTSP/1.1 version for HTTP/1.1; the head must not go upstream as received
    # (the upstream may read the line otherwise than the routing did), but rebuilt as `GET /x HTTP/1.1`
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(line + b"\r\nHost: reviews:9080\r\n\r\n")
        assert (await read_response(reader)).status == 200
    (request,) = up.requests
    assert request.raw_head.startswith(b"GET /x HTTP/1.1\r\n")


async def short_answer(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """keep_alive_echo without the path in a response header (a 60 KiB one is past the response head limit)."""
    while True:
        request = await read_request(reader)
        up.requests.append(request)
        body = b"hello " + request.line.split()[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def test_a_target_up_to_the_head_limit_is_forwarded_whole_and_one_byte_more_is_refused(start_proxy, connect):
    async with Upstream(short_answer) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        reader, writer = await connect(proxy.port)
        fixed = len(get(b"", b"reviews:9080"))
        path = b"/" + b"a" * (60 * 1024 - fixed - 1)  # the whole head is exactly the 60 KiB limit
        writer.write(get(path))
        resp = await read_response(reader)
        assert resp.status == 200 and resp.body == b"hello " + path
        writer.write(get(path + b"b"))
        assert (await read_response(reader)).status in (414, 431)
    assert [r.line for r in up.requests] == [b"GET %s HTTP/1.1" % path]


async def test_pipelined_requests_in_one_read_are_each_read_as_sent(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target, "ratings": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        writer.write(get(b"/1") + get(b"/2", b"ratings", b"X-Request-Id: mine\r\n") + get(b"http://ratings:81/3")
                     + get(b"/4", b"REVIEWS:9080") + b"GET  /5 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        answers = [await read_response(reader) for _ in range(5)]
    # REVIEWS has no route: the Host's case is kept
    assert [(a.status, a.body) for a in answers] == [(200, b"hello /1"), (200, b"hello /2"), (200, b"hello /3"),
                                                     (404, answers[3].body), (200, b"hello /5")]
    assert [(h.host, h.port, h.path) for h in router.heads] == [
        ("reviews", 9080, "/1"), ("ratings", 80, "/2"), ("ratings", 81, "/3"), ("REVIEWS", 9080, "/4"),
        ("reviews", 9080, "/5")]
    assert [r.header(b"x-request-id") == b"mine" for r in up.requests] == [False, True, False, False]
    assert [r.line for r in up.requests] == [b"GET /%d HTTP/1.1" % i for i in (1, 2, 3, 5)]


async def test_a_head_split_at_every_byte_offset_is_read_the_same(start_proxy, connect):
    head = b"GET /split?q=1 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"
    async with Upstream(keep_alive_echo) as up:
        router = StubRouter({"reviews": up.target})
        proxy = await start_proxy(router)
        reader, writer = await connect(proxy.port)
        for cut in range(len(head) + 1):
            writer.write(head[:cut])
            await writer.drain()
            await asyncio.sleep(0.002)  # its own read
            writer.write(head[cut:])
            resp = await read_response(reader)
            assert resp.status == 200 and resp.body == b"hello /split?q=1", cut
    assert {(h.method, h.host, h.port, h.path) for h in router.heads} == {("GET", "reviews", 9080, "/split?q=1")}
    for request in up.requests:
        assert request.line == b"GET /split?q=1 HTTP/1.1"
        assert [(n, v) for n, v in request.headers if n != b"x-request-id"] == [
            (b"host", b"reviews:9080"), (b"user-agent", b"t"), (b"accept", b"*/*")]
        assert UUID.fullmatch(request.header(b"x-request-id") or b"")
    assert len({r.header(b"x-request-id") for r in up.requests}) == len(head) + 1


# --- x-request-id, 256 at a time -----------------------------------------------------------------------------


async def test_request_ids_are_unique_across_connections_and_an_incoming_one_is_kept(start_proxy, connect):
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}))
        clients = [await connect(proxy.port) for _ in range(3)]
        for _ in range(100):  # 300 ids: past a batch
            for reader, writer in clients:
                writer.write(get())
            for reader, writer in clients:
                assert (await read_response(reader)).status == 200
        reader, writer = clients[0]
        writer.write(get(extra=b"X-Request-Id: Caller-Id-1\r\n"))
        assert (await read_response(reader)).status == 200
    ids = [r.header(b"x-request-id") for r in up.requests]
    assert len(set(ids[:-1])) == 300 and all(UUID.fullmatch(i or b"") for i in ids[:-1])
    assert ids[-1] == b"Caller-Id-1" and [n for n, _ in up.requests[-1].headers].count(b"x-request-id") == 1


def test_a_forked_child_never_repeats_its_parents_request_ids():
    new_request_id()  # a batch under way in the parent
    child = from_forked_child(lambda: b"\n".join(new_request_id() for _ in range(600))).split(b"\n")
    parent = [new_request_id() for _ in range(600)]
    assert len(child) == 600 and not set(child) & set(parent)
    assert {i[:24] for i in child} != {i[:24] for i in parent} and head_module._prefix == parent[0][:24]


# --- Exchange and RequestHead made as object.__new__ + init ---------------------------------------------------


def test_the_listener_builds_exchanges_and_heads_exactly_as_their_classes_would():
    # init is __init__ itself, and nothing in either class's MRO has a __new__ of its own or an `init` of another
    for cls in (Exchange, RequestHead):
        assert cls.init is cls.__init__  # type: ignore[attr-defined]
        assert all("__new__" not in vars(base) for base in cls.__mro__ if base is not object)
        assert [base for base in cls.__mro__ if "init" in vars(base)] == [cls]
    assert server._new is object.__new__


async def test_error_answers_with_access_logging_see_every_attribute_the_constructor_sets(start_proxy, connect,
                                                                                         monkeypatch):
    made: list[tuple[dict[str, object], dict[str, object]]] = []
    missing = object()

    def attributes(obj: object, cls: type) -> dict[str, object]:
        slots = [s for base in cls.__mro__ for s in vars(base).get("__slots__", ()) if s != "__dict__"]
        seen = {s: getattr(obj, s, missing) for s in slots}
        return {k: (list(v) if isinstance(v, list) else v) for k, v in {**seen, **getattr(obj, "__dict__", {})}.items()}

    def checked(cls: type, original):  # type: ignore[no-untyped-def]
        def init(self, *args):  # type: ignore[no-untyped-def]
            original(self, *args)
            made.append((attributes(self, cls), attributes(cls(*args), cls)))
        return init

    monkeypatch.setattr(Exchange, "init", checked(Exchange, Exchange.__init__))
    # RequestHead: the listener writes its slots inline, checked against __init__ in tests/proxy/test_head.py
    records: list[AccessRecord] = []

    class Buggy(StubRouter):
        def pick(self, head):  # type: ignore[no-untyped-def]
            if head.host == "bug":
                raise RuntimeError("a bug of ours")
            return super().pick(head)

    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(Buggy({"reviews": up.target}), on_complete=records.append)
        statuses = []
        for request in (get(), get(host=b"nowhere"), get(extra=b"Host: two\r\n"), get(b"/#f"), get(host=b"bug"),
                        b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: gzip\r\n\r\n"):
            reader, writer = await connect(proxy.port)
            writer.write(request)
            statuses.append((await read_response(reader)).status)
    assert statuses == [200, 404, 400, 400, 500, 501]
    assert len(records) == 6 and [r.status for r in records] == statuses
    assert len(made) == 6  # six exchanges
    for via_init, via_class in made:
        assert via_init == via_class

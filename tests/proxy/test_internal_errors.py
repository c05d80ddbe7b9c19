"""Our own bugs are not the client's fault: an exception from our code answers 500 (never 400), logs one
error line with the traceback, and closes the connection. Limits we raise on purpose are not bugs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tests.proxy.http_helpers import BOTH, StubRouter, Upstream, closed, keep_alive_echo, read_response, recorded_logs

import proxy.http.head as head_module
from proxy.core.errors import UpstreamTimeout
from proxy.http.exchange import Exchange
from proxy.http.rescue import rescue
from proxy.core.request import RequestHead

pytestmark = pytest.mark.timeout(30)

GET = b"GET / HTTP/1.1\r\nHost: app.test:8080\r\n\r\n"


class BrokenRouter(StubRouter):
    def pick(self, head: RequestHead):
        raise KeyError("a bug in routing")


def bug_lines(logs: list[dict]) -> list[dict]:
    return [entry for entry in logs if entry["event"] == "internal_error"]


def assert_logged_with_traceback(logs: list[dict], text: str) -> None:
    lines = bug_lines(logs)
    assert len(lines) == 1, logs
    assert lines[0]["log_level"] == "error" and text in lines[0]["error"]
    assert lines[0]["exc_info"].__traceback__ is not None  # rendered as the traceback in production


@BOTH
async def test_a_router_that_raises_answers_500_logs_the_traceback_and_closes(start_proxy, connect, mode):
    proxy = await start_proxy(BrokenRouter({}), mode)
    reader, writer = await connect(proxy.port)
    with recorded_logs() as logs:
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 500 and resp.body == b"internal proxy error\n"
    assert resp.header(b"connection") == b"close"
    assert await closed(reader)
    assert_logged_with_traceback(logs, "a bug in routing")


@BOTH
async def test_a_bug_inside_a_parser_callback_is_a_500_not_the_clients_400(start_proxy, connect, mode, monkeypatch):
    def broken_request_ids() -> Iterator[bytes]:
        raise ValueError("a bug while reading the head")
        yield b""

    monkeypatch.setattr(head_module, "request_ids", broken_request_ids())  # what the listener takes next() of
    proxy = await start_proxy(StubRouter({}), mode)
    reader, writer = await connect(proxy.port)
    with recorded_logs() as logs:
        writer.write(GET)
        resp = await read_response(reader)
    assert resp.status == 500
    assert await closed(reader)
    assert_logged_with_traceback(logs, "a bug while reading the head")


async def test_a_bug_while_streaming_the_body_is_a_500_and_a_close(start_proxy, connect, monkeypatch):
    def broken_feed_body(self: Exchange, chunk: bytes) -> None:
        raise RuntimeError("a bug in the body path")

    monkeypatch.setattr(Exchange, "feed_body", broken_feed_body)
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"app.test": up.target}))
        reader, writer = await connect(proxy.port)
        with recorded_logs() as logs:
            writer.write(b"POST / HTTP/1.1\r\nHost: app.test:8080\r\nContent-Length: 3\r\n\r\nabc")
            resp = await read_response(reader)
        assert resp.status == 500
        assert await closed(reader)
    assert_logged_with_traceback(logs, "a bug in the body path")


async def test_a_bug_starting_a_queued_request_answers_it_500(start_proxy, connect, monkeypatch):
    original = Exchange.start
    calls = []

    def second_start_breaks(self: Exchange) -> None:
        calls.append(self)
        if len(calls) == 2:
            raise RuntimeError("a bug starting the next request")
        original(self)

    monkeypatch.setattr(Exchange, "start", second_start_breaks)
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"app.test": up.target}))
        reader, writer = await connect(proxy.port)
        with recorded_logs() as logs:
            writer.write(GET + GET)  # the second is started from the upstream's callback, after the first
            assert (await read_response(reader)).status == 200
            resp = await read_response(reader)
        assert resp.status == 500
        assert await closed(reader)
    assert_logged_with_traceback(logs, "a bug starting the next request")


@BOTH
async def test_a_limit_raised_in_a_callback_is_answered_and_not_logged_as_a_bug(start_proxy, connect, mode):
    proxy = await start_proxy(StubRouter({}), mode)
    reader, writer = await connect(proxy.port)
    with recorded_logs() as logs:
        writer.write(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n")
        assert (await read_response(reader)).status == 431
    assert bug_lines(logs) == []


def test_rescue_logs_only_untyped_exceptions():
    with recorded_logs() as logs:
        assert rescue(UpstreamTimeout("slow"), False)[0] == 504
        assert rescue(AttributeError("oops"), False)[0] == 500
    assert [entry["error"] for entry in bug_lines(logs)] == ["AttributeError('oops')"]


async def test_what_escapes_into_the_event_loop_is_logged_with_its_traceback():
    import asyncio

    from proxy.main import log_loop_error

    def broken_callback() -> None:
        raise LookupError("a bug in a timer callback")

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(log_loop_error)
    try:
        with recorded_logs() as logs:
            loop.call_soon(broken_callback)
            await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(None)
    lines = bug_lines(logs)
    assert len(lines) == 1 and isinstance(lines[0]["exc_info"], LookupError)
    assert "broken_callback" in lines[0]["error"]


def test_nothing_is_logged_for_what_is_collected_at_interpreter_exit(monkeypatch):
    """At exit a refused bus connection's `_closed` future may be finalized before its protocol marks it retrieved:
    `proxy run` with an unknown token printed an internal_error line after its `error: ...` line on some runs."""
    import asyncio
    import sys

    from proxy.main import log_loop_error

    monkeypatch.setattr(sys, "is_finalizing", lambda: True)
    loop = asyncio.new_event_loop()
    loop.close()
    with recorded_logs() as logs:
        log_loop_error(loop, {"message": "Future exception was never retrieved",
                              "exception": ConnectionResetError(104, "Connection reset by peer")})
    assert bug_lines(logs) == []


class RetryingRouter(StubRouter):
    """Every request to app.test on a route that retries any reset or 5xx up to 3 times."""

    def __init__(self, up: Upstream) -> None:
        super().__init__({})
        from proto import xds
        from proxy.outbound.policy import compile_policy
        from proxy.core.target import Target

        rule = xds.HttpRule(destinations=[xds.WeightedDestination(host="h")],
                            retry=xds.RetryPolicy(attempts=3, retry_on=["reset", "5xx", "connect-failure"]))
        self.target = Target("127.0.0.1", up.port, "outbound|80||h", policy=compile_policy(rule))

    def pick(self, head: RequestHead):
        self.heads.append(head)
        return self.target


async def test_a_bug_in_the_connect_callback_answers_500_at_once_and_is_not_retried(start_proxy, connect,
                                                                                    monkeypatch):
    def broken_send(self: Exchange, *args: object) -> None:
        raise RuntimeError("a bug writing the upstream head")

    # _send writes the head (rebuilt, or as received) on the new connection: it runs in the connect task's callback
    monkeypatch.setattr(Exchange, "_send", broken_send)
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(RetryingRouter(up))
        reader, writer = await connect(proxy.port)
        with recorded_logs() as logs:
            writer.write(GET)
            resp = await asyncio.wait_for(read_response(reader), 5)  # not the 5-minute stream idle timeout
        assert resp.status == 500 and await closed(reader)
        assert up.requests == []
    assert_logged_with_traceback(logs, "a bug writing the upstream head")


@pytest.mark.parametrize("callback", ["on_raw_response_head", "on_response_head"])
async def test_a_bug_in_a_response_callback_answers_500_and_is_not_retried(start_proxy, connect, monkeypatch,
                                                                           callback):
    def broken_response_head(self: Exchange, *args: object) -> None:
        raise RuntimeError("a bug reading the response head")

    if callback == "on_response_head":  # the head rebuilt from parsed headers, as when the route edits them
        monkeypatch.setattr(Exchange, "on_raw_response_head", lambda self, *args: False)
    monkeypatch.setattr(Exchange, callback, broken_response_head)
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(RetryingRouter(up))
        reader, writer = await connect(proxy.port)
        with recorded_logs() as logs:
            writer.write(GET)
            resp = await asyncio.wait_for(read_response(reader), 5)
        assert resp.status == 500 and await closed(reader)
        assert len(up.requests) == 1  # our bug is not the upstream's reset: no retry
    assert_logged_with_traceback(logs, "a bug reading the response head")


async def answer_before_the_body(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")  # the head only: answer without waiting for the body
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await reader.read()


async def test_a_malformed_body_after_an_early_answer_closes_the_connection_at_once(start_proxy, connect):
    async with Upstream(answer_before_the_body) as up:
        proxy = await start_proxy(StubRouter({"app.test": up.target}))
        reader, writer = await connect(proxy.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: app.test:8080\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert (await read_response(reader)).status == 200
        writer.write(b"zz\r\nnot a chunk\r\n")  # the rest of its body is malformed: nothing to answer, close
        assert await asyncio.wait_for(closed(reader), 5)

"""Test doubles for the HTTP data plane: tiny upstream servers (one that records every byte it is sent, to
prove a refused request reached no app), a raw-socket client, a router stub, a recorder of the sidecar's logs.

Everything speaks bytes written here by hand, independent of httptools, so a test sees exactly what
the proxy put on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Awaitable, Callable, Iterator

import pytest

from proxy.core.errors import NoRoute, ProxyError
from proxy.http.head import Mode
from proxy.core.request import RequestHead
from proxy.core.target import Target

WAIT = 5.0  # upper bound for any single read in a test


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where a connect is refused for as long as the block runs: bound, never listening.
    Holding the socket keeps the port ours; a port bound and closed again could be handed to another
    process or to an outgoing connection's source port before the test connects (a flaky 503 test)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
BOTH = pytest.mark.parametrize("mode", [Mode.OUTBOUND, Mode.INBOUND], ids=["outbound", "inbound"])


class Message:
    """A parsed request or response: first line, lower-case headers, de-chunked body, framing seen."""

    def __init__(self, line: bytes, headers: list[tuple[bytes, bytes]], body: bytes, chunked: bool,
                 raw_head: bytes) -> None:
        self.line = line
        self.headers = headers
        self.body = body
        self.chunked = chunked
        self.raw_head = raw_head

    @property
    def status(self) -> int:
        return int(self.line.split()[1])

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], until_close: bool
                     ) -> tuple[bytes, bool]:
    te = dict(headers).get(b"transfer-encoding")
    if te is not None and te.lower().endswith(b"chunked"):
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(body), True
            body += await reader.readexactly(size)
            assert await reader.readexactly(2) == b"\r\n"
    length = dict(headers).get(b"content-length")
    if length is not None:
        return await reader.readexactly(int(length)), False
    return (await reader.read() if until_close else b""), False


async def read_message(reader: asyncio.StreamReader, *, response: bool = False, head_only: bool = False
                       ) -> Message:
    async def go() -> Message:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        status = int(lines[0].split()[1]) if response else 0
        if head_only or status in (204, 304):
            return Message(lines[0], headers, b"", False, raw)
        body, chunked = await _read_body(reader, headers, until_close=response)
        return Message(lines[0], headers, body, chunked, raw)

    return await asyncio.wait_for(go(), WAIT)


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> Message:
    return await read_message(reader, response=True, head_only=head_only)


async def read_request(reader: asyncio.StreamReader) -> Message:
    return await read_message(reader)


async def closed(reader: asyncio.StreamReader) -> bool:
    """True if the peer closed (EOF or reset) with nothing more to read."""
    try:
        return await asyncio.wait_for(reader.read(1), WAIT) == b""
    except ConnectionResetError:
        return True


Handler = Callable[["Upstream", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Upstream:
    """A tiny upstream server on 127.0.0.1:0 that counts connections and records requests."""

    def __init__(self, handler: Handler, rcvbuf: int | None = None) -> None:
        self.handler = handler
        self.rcvbuf = rcvbuf  # small, so the kernel cannot soak up what a flow-control test sends
        self.accepted = 0
        self.requests: list[Message] = []
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        sock = socket.socket()
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)  # accepted sockets inherit it
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._serve, sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:  # handlers waiting on a read end with EOF
            writer.transport.abort()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=2)
        for task in self.tasks:
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(self, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    @property
    def target(self) -> Target:
        return Target("127.0.0.1", self.port, "outbound|%d||upstream.test" % self.port)


async def keep_alive_echo(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive; answers with Content-Length, echoing the request body, path and some headers."""
    while True:
        req = await read_request(reader)
        up.requests.append(req)
        path = req.line.split()[1]
        body = req.body if req.body else b"hello " + path
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Seen-Path: %s\r\n\r\n%s"
                     % (len(body), path, body))
        await writer.drain()


async def chunked_reply(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        up.requests.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n1\r\n \r\n6\r\nchunks\r\n0\r\n\r\n")
        await writer.drain()


async def http10_close(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up.requests.append(await read_request(reader))
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold school ")
    await writer.drain()
    writer.write(b"body until close")


async def reset_on_request(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up.requests.append(await read_request(reader))
    writer.transport.abort()


async def stall(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up.requests.append(await read_request(reader))
    await reader.read()  # never answers; returns when the proxy or the test closes the connection


class StubRouter:
    """Router test double: host -> Target, or an exception to raise; records the heads it saw."""

    def __init__(self, routes: dict[str, Target | ProxyError]) -> None:
        self.routes = routes
        self.heads: list[RequestHead] = []

    def pick(self, head: RequestHead) -> Target:
        self.heads.append(head)
        route = self.routes.get(head.host)
        if route is None:
            raise NoRoute(f'no route for host "{head.host}:{head.port}"')
        if isinstance(route, ProxyError):
            raise route
        return route


class Clients:
    """Raw client connections opened by a test, all closed at teardown."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def __call__(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.writers.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for writer in self.writers:
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


class RecordingApp(Upstream):
    """An app that answers nothing and keeps every byte it receives, per connection."""

    def __init__(self) -> None:
        super().__init__(self._record)
        self.received = bytearray()
        self.closed = asyncio.Event()  # set when a connection from the sidecar ends

    @staticmethod
    async def _record(up: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert isinstance(up, RecordingApp)
        try:
            while data := await reader.read(65536):
                up.received += data
        finally:
            up.closed.set()


class _Recorder:
    """Stands in for a structlog logger: keeps each call as capture_logs would (event, log_level, fields).
    (capture_logs cannot see a module's logger once structlog has cached it, as runtime.log configures.)"""

    def __init__(self, entries: list[dict]) -> None:
        self.entries = entries

    def __getattr__(self, level: str):
        def emit(event: str, **fields: object) -> None:
            self.entries.append({"event": event, "log_level": level, **fields})
        return emit


@contextlib.contextmanager
def recorded_logs():
    """What the sidecar's HTTP modules log meanwhile (proxy/http/rescue.py, conn_guard.py, proxy/main.py)."""
    import proxy.http.conn_guard as conn_guard
    import proxy.http.rescue as rescue
    import proxy.main as main

    entries: list[dict] = []
    recorder = _Recorder(entries)
    saved = (rescue.log, conn_guard.log, main.get_logger)
    rescue.log = conn_guard.log = recorder
    main.get_logger = lambda name="": recorder
    try:
        yield entries
    finally:
        rescue.log, conn_guard.log, main.get_logger = saved

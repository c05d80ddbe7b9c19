"""The bare pass-through proxy: what Python itself allows, the benchmark's `bare-pair` and `bare-single` rows.

uvloop + httptools and a few dozen lines of ours. Each client connection gets one upstream connection,
opened when the client connects; bytes go both ways as received, unchanged. The parsers only find where
each request and response ends (Content-Length, chunked, keep-alive), so that a request or response that
ends the connection (`Connection: close`, HTTP/1.0) closes it once the response has been forwarded.
No routing, no header changes, no timeouts, no limits: a measuring stick, not a product.

Whatever the parsers cannot follow (an upgrade, CONNECT, a parse error) turns the connection into a
plain byte relay; a side that closes closes the other once its bytes are written (a client's half-close
is passed on as one), so no connection hangs on what the parsers misread. Flow control: a side whose
writes back up pauses reading on the other side.

    python -m bench.dataplane.bare_proxy --port PORT --upstream PORT     # both on 127.0.0.1, until SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

import httptools
import uvloop

HOST = "127.0.0.1"
_PARSE_ENDS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


class Downstream(asyncio.Protocol):
    """The client's connection: forwards its bytes upstream, notes where each request ends."""

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.upstream: Upstream | None = None  # set once connected
        self.early: list[bytes] = []  # what the client sent before that (reading pauses meanwhile) ...
        self.early_eof = False  # ... and whether it half-closed
        self.forward: Callable[[bytes], object] = self._hold  # then: the upstream transport's write
        self.parser = httptools.HttpRequestParser(self)
        self.parsing = True  # False: a plain byte relay from now on (both directions)
        self.keep_alive: deque[bool] = deque()  # per request in flight: may the connection stay open after it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transport is no asyncio.Transport subclass
        self.transport.pause_reading()  # nothing to forward to yet (uvloop may deliver a first read anyway)
        asyncio.get_running_loop().create_task(self._connect())

    def _hold(self, data: bytes) -> None:
        self.early.append(data)
        self.transport.pause_reading()

    async def _connect(self) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(
                lambda: Upstream(self), HOST, self.upstream_port)
        except OSError:
            self.transport.abort()  # nothing to proxy to; the client sees a reset, not a hang
            return
        self.upstream = upstream
        self.forward = upstream.transport.write
        if self.early:
            upstream.transport.write(b"".join(self.early))
            self.early.clear()
        if self.early_eof:
            self.eof_received()
        if self.transport.is_closing():
            upstream.transport.close()
        else:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.forward(data)
        if self.parsing:
            try:
                self.parser.feed_data(data)
            except _PARSE_ENDS:
                self.relay_only()

    def on_message_complete(self) -> None:
        if self.parser.get_method() == b"HEAD":  # its response has no body the response parser could find
            self.relay_only()
        else:
            self.keep_alive.append(self.parser.should_keep_alive())

    def relay_only(self) -> None:
        self.parsing = False
        if self.upstream is not None:
            self.upstream.parsing = False

    def eof_received(self) -> bool:
        up = self.upstream
        if up is None:
            self.early_eof = True
        elif up.transport.can_write_eof():
            up.transport.write_eof()  # the client is done sending; its responses still come back
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()


class Upstream(asyncio.Protocol):
    """The connection to the upstream: forwards its bytes to the client, closes both after a last response."""

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, down: Downstream) -> None:
        self.down = down
        self.client = down.transport
        self.forward = down.transport.write
        self.parser = httptools.HttpResponseParser(self)
        self.parsing = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.forward(data)
        if self.parsing:
            try:
                self.parser.feed_data(data)
            except _PARSE_ENDS:
                self.down.relay_only()

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: an interim response; 101 switches protocols, so only bytes follow
            if status == 101:
                self.down.relay_only()
            return
        wanted = self.down.keep_alive.popleft() if self.down.keep_alive else True
        if not (wanted and self.parser.should_keep_alive()):
            self.client.close()  # after the bytes already written
            self.transport.close()

    def eof_received(self) -> None:
        self.client.close()  # after the bytes already written

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()

    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()


async def serve(port: int, upstream_port: int) -> asyncio.Server:
    """Listen on 127.0.0.1:port (0: any free port), each connection passed through to 127.0.0.1:upstream_port."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: Downstream(upstream_port), HOST, port, backlog=4096,
                                    reuse_address=True)


async def _main(port: int, upstream_port: int) -> None:
    server = await serve(port, upstream_port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane.bare_proxy",
                                     description="A bare HTTP/1.1 pass-through proxy on 127.0.0.1 (the benchmark's).")
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--upstream", type=int, required=True, help="forward to 127.0.0.1:PORT")
    args = parser.parse_args()
    uvloop.run(_main(args.port, args.upstream))


if __name__ == "__main__":
    main()

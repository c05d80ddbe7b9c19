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

Mutual TLS (the `bare-tls-pair` row), either hop or both, TLS 1.3 only:
    --tls-server CERT.pem --ca CA.pem     the listener terminates TLS and requires a client certificate that
                                          CA.pem signed (CERT.pem: certificate and key)
    --tls-client CERT.pem --ca CA.pem --server-name NAME
                                          the upstream connection originates TLS with CERT.pem as client
                                          certificate and verifies the upstream's chain against CA.pem and its
                                          name against NAME
    --tls-transport uvloop|aiofastnet     whose TLS transport (default uvloop's SSL transport; aiofastnet: the
                                          aio-libs C transports the sidecar uses by default, proxy/tls/transport.py)
Nothing else changes: TLS records in, bytes forwarded as decrypted, the same framing.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import uvloop

HOST = "127.0.0.1"
_PARSE_ENDS = (httptools.HttpParserError, httptools.HttpParserUpgrade)
TRANSPORTS = ("uvloop", "aiofastnet")


@dataclass(frozen=True)
class Tls:
    """The TLS of both hops: `server` terminates on the listener, `client` originates to the upstream (None:
    that hop is plaintext); `transport`: whose TLS transport carries them (one of TRANSPORTS)."""

    server: ssl.SSLContext | None = None
    client: ssl.SSLContext | None = None
    server_name: str | None = None  # the name the upstream's certificate must carry
    transport: str = "uvloop"


PLAINTEXT = Tls()


def server_context(cert: str, ca: str) -> ssl.SSLContext:
    """TLS 1.3, `cert` (certificate and key in one PEM) as ours, a client certificate signed by `ca` required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: str, ca: str) -> ssl.SSLContext:
    """TLS 1.3, `cert` as our client certificate, the server's chain verified against `ca` and its name checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert)
    ctx.load_verify_locations(ca)
    return ctx


def _afn() -> Any:
    import aiofastnet  # the sidecar's dependency (pyproject.toml); loaded only when chosen

    return aiofastnet


class Downstream(asyncio.Protocol):
    """The client's connection: forwards its bytes upstream, notes where each request ends."""

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, upstream_port: int, tls: Tls = PLAINTEXT) -> None:
        self.upstream_port = upstream_port
        self.tls = tls
        self.upstream: Upstream | None = None  # set once connected
        self.early: list[bytes] = []  # what the client sent before that (reading pauses meanwhile) ...
        self.early_eof = False  # ... and whether it half-closed
        self.client_done = False  # half-closed and the upstream cannot be: close after the last response
        self.forward: Callable[[bytes], object] = self._hold  # then: the upstream transport's write
        self.parser = httptools.HttpRequestParser(self)
        self.parsing = True  # False: a plain byte relay from now on (both directions)
        self.keep_alive: deque[bool] = deque()  # per request in flight: may the connection stay open after it
        # aiofastnet's TLS transport, once resumed, does not deliver what it decrypted while paused (in TLS 1.3 the
        # first request comes with the client's Finished): it is never paused before the upstream is connected
        self.hold_paused = tls.server is None or tls.transport != "aiofastnet"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transport is no asyncio.Transport subclass
        if self.hold_paused:
            self.transport.pause_reading()  # nothing to forward to yet (uvloop may deliver a first read anyway)
        asyncio.get_running_loop().create_task(self._connect())

    def _hold(self, data: bytes) -> None:
        self.early.append(data)
        if self.hold_paused:
            self.transport.pause_reading()

    async def _connect(self) -> None:
        loop, tls = asyncio.get_running_loop(), self.tls
        try:
            if tls.client is None:
                _, upstream = await loop.create_connection(lambda: Upstream(self), HOST, self.upstream_port)
            elif tls.transport == "aiofastnet":
                _, upstream = await _afn().create_connection(loop, lambda: Upstream(self), HOST, self.upstream_port,
                                                             ssl=tls.client, server_hostname=tls.server_name)
            else:
                _, upstream = await loop.create_connection(lambda: Upstream(self), HOST, self.upstream_port,
                                                           ssl=tls.client, server_hostname=tls.server_name)
        except (OSError, ssl.SSLError):  # ssl.SSLError: an upstream whose certificate we refuse
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
        elif self.hold_paused:
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
        elif up.transport.is_closing():
            pass
        elif up.transport.can_write_eof():
            up.transport.write_eof()  # the client is done sending; its responses still come back
        else:  # a TLS upstream has no half-close: close both once the requests in flight are answered
            self.client_done = True
            if not self.keep_alive:
                up.transport.close()
                self.transport.close()
        return self.tls.server is None  # keep the half-open connection; TLS has no half-close (True is ignored)

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
        down = self.down
        wanted = down.keep_alive.popleft() if down.keep_alive else True
        if not (wanted and self.parser.should_keep_alive()) or (down.client_done and not down.keep_alive):
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


async def serve(port: int, upstream_port: int, tls: Tls = PLAINTEXT) -> asyncio.Server:
    """Listen on 127.0.0.1:port (0: any free port), each connection passed through to 127.0.0.1:upstream_port."""
    loop = asyncio.get_running_loop()
    if tls.server is not None and tls.transport == "aiofastnet":
        server: asyncio.Server = await _afn().create_server(loop, lambda: Downstream(upstream_port, tls), HOST, port,
                                                            backlog=4096, reuse_address=True, ssl=tls.server)
        return server
    return await loop.create_server(lambda: Downstream(upstream_port, tls), HOST, port, backlog=4096,
                                    reuse_address=True, ssl=tls.server)


def tls_from(args: argparse.Namespace) -> Tls:
    if (args.tls_server or args.tls_client) and not args.ca:
        raise SystemExit("--tls-server and --tls-client need --ca")
    if args.tls_client and not args.server_name:
        raise SystemExit("--tls-client needs --server-name (the upstream certificate's name)")
    return Tls(server_context(args.tls_server, args.ca) if args.tls_server else None,
               client_context(args.tls_client, args.ca) if args.tls_client else None,
               args.server_name or None, args.tls_transport)


async def _main(port: int, upstream_port: int, tls: Tls) -> None:
    server = await serve(port, upstream_port, tls)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane.bare_proxy",
                                     description="A bare HTTP/1.1 pass-through proxy on 127.0.0.1 (the benchmark's).")
    parser.add_argument("--port", type=int, required=True, help="listen on 127.0.0.1:PORT")
    parser.add_argument("--upstream", type=int, required=True, help="forward to 127.0.0.1:PORT")
    parser.add_argument("--tls-server", metavar="CERT", help="terminate TLS 1.3 (certificate + key PEM), client "
                        "certificate required")
    parser.add_argument("--tls-client", metavar="CERT", help="originate TLS 1.3 upstream with this client certificate")
    parser.add_argument("--ca", help="the CA (PEM) both hops verify the peer's certificate against")
    parser.add_argument("--server-name", help="the name the upstream's certificate must carry (and the SNI)")
    parser.add_argument("--tls-transport", choices=TRANSPORTS, default="uvloop", help="whose TLS transport")
    args = parser.parse_args()
    uvloop.run(_main(args.port, args.upstream, tls_from(args)))


if __name__ == "__main__":
    main()

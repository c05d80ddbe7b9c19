"""A response written to a TLS connection goes out as one TLS record, not one per piece of its head.

The listener writes a response as a list of pieces (status line, header names and values, body:
proxy/http/exchange_response.py) with writelines; a TLS transport (aiofastnet's, uvloop's) seals each item
of writelines as a record of its own, and each record costs both ends a seal or an open (~8k instructions
each in OpenSSL 3.0: docs/performance.md, "TLS writes"). So on TLS the listener joins them into one write. Here a
client with its own memory-BIO TLS counts the records the sidecar's answer arrives in, over real sockets, on
either transport proxy/tls/transport.py can choose, and checks the bytes are those plaintext gets.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
import uvloop

from proxy.http.head import Mode
from proxy.http.listener_state import ServerState
from proxy.http.server import HttpProxyProtocol
from proxy.http.upstream_pool import ConnectionPool
from proxy.identity.tls import build_contexts
from proxy.inbound.local_app import LocalAppRouter
from proxy.tls import transport
from proxy.tls.acceptor import DISABLE, STRICT, TlsAcceptor
from tests.proxy.identity.testca import TestCa

SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/productpage"
BODY = b"x" * 98
APP_RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 05:13:31 GMT\r\n"
                b"Content-Type: text/plain\r\nX-One: 1\r\nX-Two: 2\r\nContent-Length: 98\r\n\r\n" + BODY)
REQUEST = b"GET / HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: t\r\n\r\n"
APPLICATION_DATA = 0x17  # TLS 1.3 seals every record after the handshake under this outer type


class App(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(APP_RESPONSE)  # type: ignore[attr-defined]


class RecordCountingClient:
    """TLS over a plain socket with memory BIOs, so the records the server sends can be counted."""

    def __init__(self, context: ssl.SSLContext, sock: socket.socket) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)
        self.raw = b""  # received, not yet fed to `incoming` (records are fed whole, one at a time)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def _record(self) -> bytes:
        """The next whole record as received (5-byte header and body)."""
        loop = asyncio.get_running_loop()
        while len(self.raw) < 5 or len(self.raw) < 5 + int.from_bytes(self.raw[3:5], "big"):
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 5)
            assert chunk, "the server closed the connection"
            self.raw += chunk
        size = 5 + int.from_bytes(self.raw[3:5], "big")
        record, self.raw = self.raw[:size], self.raw[size:]
        return record

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                await self._flush()
                return
            except ssl.SSLWantReadError:
                await self._flush()
                self.incoming.write(await self._record())

    async def exchange(self, request: bytes, end: bytes) -> tuple[bytes, int]:
        """Send `request`; (the answer up to `end`, how many records it came in)."""
        self.tls.write(request)
        await self._flush()
        answer, records = b"", 0
        while not answer.endswith(end):
            record = await self._record()
            assert record[0] == APPLICATION_DATA
            records += 1
            self.incoming.write(record)
            try:
                while True:
                    answer += self.tls.read(65536)
            except ssl.SSLWantReadError:
                pass
        return answer, records


async def _answer(mtls: bool) -> tuple[bytes, int]:
    """The sidecar's inbound answer to REQUEST (mutual TLS or plaintext) and the TLS records it came in."""
    loop = asyncio.get_running_loop()
    ca = TestCa()
    server_ctx = build_contexts(ca.material(SERVER_ID), [ca.pem]).server
    client_ctx = build_contexts(ca.material(CLIENT_ID), [ca.pem]).client
    app = await loop.create_server(App, "127.0.0.1", 0)
    state = ServerState(LocalAppRouter("127.0.0.1", app.sockets[0].getsockname()[1], "reviews"), ConnectionPool(),
                        Mode.INBOUND, None, None, 60.0)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    acceptor = TlsAcceptor(listening, lambda: HttpProxyProtocol(state), lambda: STRICT if mtls else DISABLE,
                           lambda: server_ctx)
    acceptor.start()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, listening.getsockname())
        if not mtls:
            await loop.sock_sendall(sock, REQUEST)
            answer = b""
            while not answer.endswith(BODY):
                answer += await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            return answer, 0
        client = RecordCountingClient(client_ctx, sock)
        await client.handshake()
        return await client.exchange(REQUEST, BODY)
    finally:
        sock.close()
        acceptor.close()
        app.close()


@pytest.mark.parametrize("name", transport.TRANSPORTS)
def test_a_response_over_mutual_tls_is_one_record_and_the_bytes_plaintext_gets(name: str) -> None:
    transport.configure(name)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            plain, _ = runner.run(_answer(False))
            sealed, records = runner.run(_answer(True))
    finally:
        transport.configure(transport.DEFAULT)
    assert plain.startswith(b"HTTP/1.1 200 OK\r\n") and plain.endswith(BODY)
    assert sealed == plain
    assert records == 1  # before the join: one per piece, 3 here (the head as received, what is added, the body)

"""TLS on memory BIOs for the opaque-TCP relays (proxy/tls/bio.py): half-closes cross it both ways (close_notify),
a failed or stalled handshake is counted by the acceptor and never reaches the app protocol."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import uvloop

from proxy.tls.acceptor import STRICT, TlsAcceptor
from proxy.tls.bio import TlsLayer
from proxy.tls.listen import listening_socket
from tests.proxy.tls_certs import TestCa

SERVER_ID = "spiffe://cluster.local/ns/default/sa/db"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/api"


class AnswersAfterEof(asyncio.Protocol):
    """The server app side: echoes, and says bye after the client's EOF (then closes)."""

    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        AnswersAfterEof.made += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool:
        self.transport.write(b"bye")  # type: ignore[attr-defined]
        self.transport.write_eof()  # type: ignore[attr-defined]
        return True


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.eof = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof.set_result(None)
        return True


def _run(body) -> None:  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(body())


def test_a_half_close_crosses_mutual_tls_and_the_answer_after_it_comes_back(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)

    async def body() -> None:
        server_ctx = ca.context(SERVER_ID, "server", server=True)
        sock = listening_socket("127.0.0.1", 0)
        acceptor = TlsAcceptor(sock, AnswersAfterEof, lambda: STRICT, lambda: server_ctx, layered=True)
        acceptor.start()
        app = Client()
        layer = TlsLayer(ca.context(CLIENT_ID, "client", server=False), False, None, app)
        await asyncio.get_running_loop().create_connection(lambda: layer, "127.0.0.1", sock.getsockname()[1])
        await layer.handshake
        assert layer.sslobj is not None and layer.sslobj.version() == "TLSv1.3"
        app.transport.write(b"row 1")  # type: ignore[attr-defined]
        assert app.transport.can_write_eof()  # type: ignore[attr-defined]
        app.transport.write_eof()  # type: ignore[attr-defined]
        await asyncio.wait_for(app.eof, 5)
        assert app.data == b"row 1bye"
        assert acceptor.stats.tls == 1 and acceptor.stats.handshake_failed == 0
        app.transport.close()  # type: ignore[attr-defined]
        acceptor.close()

    _run(body)


def test_a_client_of_another_ca_or_a_stalled_handshake_never_reaches_the_app(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ca, stranger = TestCa(tmp_path / "a"), TestCa(tmp_path / "b")

    async def body() -> None:
        server_ctx = ca.context(SERVER_ID, "server", server=True)
        sock = listening_socket("127.0.0.1", 0)
        acceptor = TlsAcceptor(sock, AnswersAfterEof, lambda: STRICT, lambda: server_ctx, layered=True,
                               handshake_timeout=0.3, first_byte_timeout=0.3)
        acceptor.start()
        port = sock.getsockname()[1]
        made = AnswersAfterEof.made
        layer = TlsLayer(stranger.context(CLIENT_ID, "client", server=False), False, None, Client())
        await asyncio.get_running_loop().create_connection(lambda: layer, "127.0.0.1", port)
        try:
            await asyncio.wait_for(layer.handshake, 5)
            raised = False
        except (OSError, TimeoutError):
            raised = True
        assert raised  # our client refuses the server's chain (another CA), and the server ours
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"\x16")  # a handshake record's first byte, then nothing
        for _ in range(100):
            if acceptor.stats.handshake_failed + acceptor.stats.timed_out >= 2:
                break
            await asyncio.sleep(0.05)
        # well before 5 s: the half ClientHello waits for the rest (its SNI, proxy/tls/client_hello.py) at most
        # the 0.3 s first-byte timeout, as Envoy's tls_inspector waits at most listener_filters_timeout
        assert acceptor.stats.handshake_failed == 1 and acceptor.stats.timed_out == 1
        assert AnswersAfterEof.made == made  # the app protocol never saw either
        stalled.close()
        acceptor.close()

    _run(body)

"""A refused TLS handshake reaches the peer as the TLS alert that says why, not as a reset (proxy/core/tls_refusal.py),
on every side that refuses: the inbound acceptor with the loop's TLS transport and with the memory-BIO layer of
the TCP listeners, and the outbound origination (the HTTP pool, the TCP relay) when our client refuses the
server. The peer here is Python's blocking ssl module in a thread: nothing of ours reads the alert. Over real
loopback sockets, on uvloop (the sidecar's loop) and asyncio's own."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from proxy.core.errors import UpstreamConnectError
from proxy.core.target import Target
from proxy.http.upstream_pool import ConnectionPool
from proxy.tcp.listener import TcpListener
from proxy.tls.acceptor import STRICT, TlsAcceptor
from proxy.tls.bio import TlsLayer
from proxy.tls import transport
from proxy.tls.origination import TlsOrigination
from tests.proxy.tls_certs import TestCa

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def uvloop_tls_transport():
    """These are the alerts of `--tls-transport uvloop`: aiofastnet (the default) drops a failed handshake's
    alert with the connection (test_aiofastnet_refuses_too_without_the_alert below)."""
    transport.configure("uvloop")
    yield
    transport.configure(transport.DEFAULT)

SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/productpage"
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"uvloop": uvloop.new_event_loop,
                                                            "asyncio": asyncio.new_event_loop}


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class Cas:
    def __init__(self, tmp: Path) -> None:
        (tmp / "mesh").mkdir()
        (tmp / "other").mkdir()
        self.mesh = TestCa(tmp / "mesh")
        self.other = TestCa(tmp / "other", "other root")

    def anonymous(self, max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
        """A client that trusts the mesh's server and has no certificate of its own."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.maximum_version = max_version
        context.load_verify_locations(cadata=self.mesh.root_pem)
        return context

    def stranger(self) -> ssl.SSLContext:
        """A client whose certificate comes from another CA (it trusts the mesh's server)."""
        context = self.other.context(CLIENT_ID, "stranger", server=False)
        context.load_verify_locations(cadata=self.mesh.root_pem)
        return context


def what_the_client_sees(port: int, context: ssl.SSLContext, hold: float = 0.0) -> str:
    """Blocking: handshake, send a line, wait `hold` s without reading, read. The answer, or the SSLError's
    reason (the alert as OpenSSL names it), or "reset" / "eof"."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, suppress_ragged_eofs=False) as tls:
                tls.sendall(b"hello")  # TLS 1.3: the client's handshake is done before the server checks it
                time.sleep(hold)
                return f"answer {tls.recv(100)!r}"
        except ssl.SSLError as exc:
            return str(exc.reason)
        except ConnectionResetError:
            return "reset"


Body = Callable[[TlsAcceptor, Cas], Awaitable[None]]


@pytest.fixture(params=[(loop, layered) for loop in LOOPS for layered in (False, True)],
                ids=lambda p: f"{p[0]}-{'layered' if p[1] else 'loop-tls'}")
def strict(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., None]:
    """Runs a body against a STRICT acceptor (the loop's TLS transport, or the TCP listeners' layer)."""
    loop_name, layered = request.param

    def runner(body: Body, linger: float = 1.0, with_certificate: bool = True) -> None:
        cas = Cas(tmp_path)
        server_ctx = cas.mesh.context(SERVER_ID, "server", server=True)

        async def main() -> None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            acceptor = TlsAcceptor(sock, Echo, lambda: STRICT, lambda: server_ctx if with_certificate else None,
                                   handshake_timeout=5.0, layered=layered, linger=linger)
            acceptor.start()
            try:
                await body(acceptor, cas)
            finally:
                acceptor.close()

        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as run:
            run.run(main())
    return runner


def port_of(acceptor: TlsAcceptor) -> int:
    return acceptor.sock.getsockname()[1]


async def settled(acceptor: TlsAcceptor, within: float) -> float:
    """Seconds until the acceptor holds nothing (fails after `within`)."""
    start = time.monotonic()
    while acceptor.pending:
        assert time.monotonic() - start < within, f"still holding {acceptor.pending} after {within}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def test_strict_tells_a_client_without_a_certificate_or_from_another_ca_why(strict: Callable[..., None]) -> None:
    async def body(acceptor: TlsAcceptor, cas: Cas) -> None:
        port = port_of(acceptor)
        assert await asyncio.to_thread(what_the_client_sees, port, cas.anonymous()) == \
            "TLSV13_ALERT_CERTIFICATE_REQUIRED"  # alert 116, what openssl s_client prints as "certificate required"
        assert await asyncio.to_thread(what_the_client_sees, port, cas.stranger()) == "TLSV1_ALERT_UNKNOWN_CA"
        # TLS 1.2 has no certificate_required: handshake_failure (40), as OpenSSL servers and Envoy send
        assert await asyncio.to_thread(what_the_client_sees, port, cas.anonymous(ssl.TLSVersion.TLSv1_2)) == \
            "SSLV3_ALERT_HANDSHAKE_FAILURE"
        assert acceptor.stats.handshake_failed == 3
        client = cas.mesh.context(CLIENT_ID, "client", server=False)
        assert await asyncio.to_thread(what_the_client_sees, port, client) == "answer b'hello'"

    strict(body)


def test_a_refused_client_that_never_reads_is_held_only_for_the_linger_bound(strict: Callable[..., None]) -> None:
    async def body(acceptor: TlsAcceptor, cas: Cas) -> None:
        seen = asyncio.ensure_future(asyncio.to_thread(what_the_client_sees, port_of(acceptor), cas.anonymous(),
                                                       hold=4.0))
        while not acceptor.stats.handshake_failed:
            await asyncio.sleep(0.02)
        await settled(acceptor, within=3.0)  # linger 0.3 s; the client neither reads nor closes for 4 s
        assert not seen.done()
        assert await seen == "TLSV13_ALERT_CERTIFICATE_REQUIRED"  # the alert waited for it; no reset after it

    strict(body, linger=0.3)


def test_lingering_ends_when_the_refused_client_closes(strict: Callable[..., None]) -> None:
    async def body(acceptor: TlsAcceptor, cas: Cas) -> None:
        assert await asyncio.to_thread(what_the_client_sees, port_of(acceptor), cas.anonymous()) == \
            "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        await settled(acceptor, within=5.0)  # well before the 30 s bound: the client read its alert and closed

    strict(body, linger=30.0)


def test_a_client_hello_while_the_workload_has_no_certificate_gets_handshake_failure(
        strict: Callable[..., None]) -> None:
    async def body(acceptor: TlsAcceptor, cas: Cas) -> None:
        client = cas.mesh.context(CLIENT_ID, "client", server=False)
        assert await asyncio.to_thread(what_the_client_sees, port_of(acceptor), client) == \
            "SSLV3_ALERT_HANDSHAKE_FAILURE"
        assert acceptor.stats.tls_refused == 1
        await settled(acceptor, within=5.0)

    strict(body, with_certificate=False)


def test_plaintext_into_strict_is_reset_as_envoy_does(strict: Callable[..., None]) -> None:
    """A plaintext client cannot read a TLS alert: the connection is closed with its bytes unread, a reset
    (curl: "Recv failure: Connection reset by peer", as against Istio's STRICT)."""
    async def body(acceptor: TlsAcceptor, cas: Cas) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(acceptor))
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        assert acceptor.stats.plaintext_refused == 1

    strict(body)


# --- the client side: our sidecar refuses the server ---------------------------------------------------------


def one_tls_server(context: ssl.SSLContext) -> tuple[int, Callable[[], str]]:
    """A blocking TLS server for one connection, in a thread. Returns its port and a function that waits for
    what it saw: "close_notify" (a clean TLS close after the handshake), "data ...", the SSLError's reason
    (an alert from the client), "reset"."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    result: list[str] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with context.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False) as tls:
                data = tls.recv(100)
                result.append("close_notify" if data == b"" else f"data {data!r}")
        except ssl.SSLError as exc:
            result.append(str(exc.reason))
        except ConnectionResetError:
            result.append("reset")
        except OSError as exc:
            result.append(repr(exc))
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def seen() -> str:
        thread.join(20)
        return result[0] if result else "nothing"
    return listener.getsockname()[1], seen


def run_uvloop(body: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
        run.run(body())


def test_the_pool_tells_a_server_from_another_ca_why_and_closes_another_identity_with_close_notify(
        tmp_path: Path) -> None:
    cas = Cas(tmp_path)
    client = cas.mesh.context(CLIENT_ID, "client", server=False)

    async def body() -> None:
        port, seen = one_tls_server(cas.other.context(SERVER_ID, "other", server=True))
        with pytest.raises(UpstreamConnectError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            await ConnectionPool().connect("127.0.0.1", port, tls=TlsOrigination(lambda: client, SERVER_ID))
        assert caught.value.flag == "UF"
        assert await asyncio.to_thread(seen) == "TLSV1_ALERT_UNKNOWN_CA"  # alert 48, not a reset

        impostor = cas.mesh.context("spiffe://cluster.local/ns/default/sa/impostor", "impostor", server=True)
        port, seen = one_tls_server(impostor)
        with pytest.raises(UpstreamConnectError, match="expected"):
            await ConnectionPool().connect("127.0.0.1", port, tls=TlsOrigination(lambda: client, SERVER_ID))
        # the identity is checked after the handshake (no alert can name it): a TLS close, not a reset
        assert await asyncio.to_thread(seen) == "close_notify"

    run_uvloop(body)


def test_the_tcp_relay_tells_a_server_from_another_ca_why_and_closes_another_identity_with_close_notify(
        tmp_path: Path) -> None:
    cas = Cas(tmp_path)
    client = cas.mesh.context(CLIENT_ID, "client", server=False)

    async def relay_to(port: int) -> None:
        target = Target("127.0.0.1", port, "outbound|5432||db", tls=TlsOrigination(lambda: client, SERVER_ID))
        listener = TcpListener("127.0.0.1", 0, lambda _: target, "test")
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"hello\n")
            try:
                assert await asyncio.wait_for(reader.read(), 10) == b""  # nothing relayed
            except ConnectionResetError:  # a reset also shows nothing was relayed
                pass
            writer.close()
        finally:
            await listener.stop()

    async def body() -> None:
        port, seen = one_tls_server(cas.other.context(SERVER_ID, "other", server=True))
        await relay_to(port)
        assert await asyncio.to_thread(seen) == "TLSV1_ALERT_UNKNOWN_CA"
        port, seen = one_tls_server(cas.mesh.context("spiffe://cluster.local/ns/default/sa/impostor", "imp",
                                                     server=True))
        await relay_to(port)
        assert await asyncio.to_thread(seen) == "close_notify"

    run_uvloop(body)


def test_a_layer_of_our_own_refusing_the_server_sends_its_alert(tmp_path: Path) -> None:
    cas = Cas(tmp_path)

    async def body() -> None:
        port, seen = one_tls_server(cas.other.context(SERVER_ID, "other", server=True))
        layer = TlsLayer(cas.mesh.context(CLIENT_ID, "client", server=False), False, None, Echo(), linger=0.3)
        await asyncio.get_running_loop().create_connection(lambda: layer, "127.0.0.1", port)
        with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.wait_for(layer.handshake, 10)
        assert await asyncio.to_thread(seen) == "TLSV1_ALERT_UNKNOWN_CA"

    run_uvloop(body)


def test_aiofastnet_refuses_too_without_the_alert(strict: Callable[..., None]) -> None:
    """With the default transport a client without a certificate or from another CA is refused all the same
    and the refusal is counted and logged; it reads the connection closed, not the alert."""
    async def body(acceptor: TlsAcceptor, cas: Cas) -> None:
        transport.configure("aiofastnet")
        port = port_of(acceptor)
        for client in (cas.anonymous(), cas.stranger()):
            seen = await asyncio.to_thread(what_the_client_sees, port, client)
            assert not seen.startswith("answer"), seen
        assert acceptor.stats.handshake_failed == 2
        client = cas.mesh.context(CLIENT_ID, "client", server=False)
        assert await asyncio.to_thread(what_the_client_sees, port, client) == "answer b'hello'"

    strict(body)

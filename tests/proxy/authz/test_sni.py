"""connection.sni on real TLS connections: the acceptor reads the ClientHello's server name (as Envoy's
tls_inspector) on both TLS transports and on the opaque-TCP listeners' own TLS layer, waits for a hello split
over several segments, and refuses one over 64 KiB (MAX_CLIENT_HELLO, one byte over; at it: handed over)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from tests.proxy.authz.helpers import policy
from tests.proxy.authz.test_inbound_stage import push
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_response
from tests.proxy.test_client_hello import synthetic
from tests.proxy.tls_certs import TestCa
from proxy.control.config_state import ConfigState
from proxy.core.target import Target
from proxy.http.head import Mode
from proxy.inbound.authz.engine import Authorization
from proxy.inbound.local_app import LocalAppRouter
from proxy.tcp.listener import TcpListener
from proxy.tls import transport
from proxy.tls.acceptor import PERMISSIVE, STRICT, TlsAcceptor
from proxy.tls.client_hello import MAX_CLIENT_HELLO
from proxy.tls.listen import listening_socket

pytestmark = pytest.mark.timeout(60)

SERVER_ID = "spiffe://cluster.local/ns/foo/sa/app"
CLIENT_ID = "spiffe://cluster.local/ns/foo/sa/sleep"
ONLY_APP_SNI = policy("foo/sni", "ALLOW", {"from": [{"source": {"principals": [CLIENT_ID[len("spiffe://"):]]}}],
                                           "when": [{"key": "connection.sni", "values": ["app.example.com"]}]})


@pytest.fixture
def certs(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = TestCa(tmp_path)
    return ca.context(SERVER_ID, "server", server=True), ca.context(CLIENT_ID, "client", server=False)


@pytest.fixture(params=transport.TRANSPORTS)
def tls_transport(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    transport.configure(request.param)
    yield request.param
    transport.configure(transport.DEFAULT)


async def get(port: int, client: ssl.SSLContext, sni: str | None) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=sni or "",
                                                   ssl_handshake_timeout=5)
    writer.write(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
    status = (await read_response(reader)).status
    writer.close()
    return status


async def test_an_http_policy_on_connection_sni(certs, tls_transport, start_proxy):
    server, client = certs
    async with Upstream(keep_alive_echo) as app:
        state = ConfigState(workload_id="w1")
        router = LocalAppRouter("127.0.0.1", app.port, "app", state, "foo")
        state.apply(push(1, ONLY_APP_SNI))
        listener = await start_proxy(router, Mode.INBOUND, tls_mode=lambda: PERMISSIVE, tls_context=lambda: server)
        assert await get(listener.port, client, "app.example.com") == 200
        assert await get(listener.port, client, "other.example.com") == 403
        assert await get(listener.port, client, None) == 403  # no SNI
    assert len(app.requests) == 1


async def test_a_tcp_policy_on_connection_sni(certs):
    server, client = certs

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(4))
        writer.close()

    app = await asyncio.start_server(echo, "127.0.0.1", 0)
    app_port = app.sockets[0].getsockname()[1]
    authz = Authorization([ONLY_APP_SNI])
    listener = TcpListener("127.0.0.1", 0, lambda c: Target("127.0.0.1", app_port, "inbound|x||"), "in",
                           tls_mode=lambda: STRICT, tls_context=lambda: server, authorize=lambda: authz.tcp,
                           app_port=app_port)
    await listener.start()

    async def ping(sni: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port, ssl=client, server_hostname=sni)
        writer.write(b"ping")
        try:
            return await asyncio.wait_for(reader.read(4), 5)
        except (ConnectionError, ssl.SSLError):
            return b""
        finally:
            writer.close()

    try:
        assert await ping("app.example.com") == b"ping"
        assert await ping("db.example.com") == b""
        assert listener.denied == 1
    finally:
        await listener.stop()
        app.close()


class Records(asyncio.Protocol):
    made: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Records.made.append(getattr(self, "sni", ""))
        transport.close()


def acceptor_on(server: ssl.SSLContext, first_byte_timeout: float = 5.0) -> tuple[TlsAcceptor, int]:
    sock = listening_socket("127.0.0.1", 0)
    acceptor = TlsAcceptor(sock, Records, lambda: PERMISSIVE, lambda: server, first_byte_timeout=first_byte_timeout,
                           handshake_timeout=2.0)
    acceptor.start()
    return acceptor, sock.getsockname()[1]


async def test_a_client_hello_split_over_segments_is_waited_for(certs):
    server, client = certs
    Records.made = []
    acceptor, port = acceptor_on(server)
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client.wrap_bio(incoming, outgoing, server_hostname="split.example.com")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    try:
        await loop.sock_sendall(sock, hello[:7])  # a record header and a little: the name is further on
        await asyncio.sleep(0.1)
        assert acceptor.pending == 1 and Records.made == []
        await loop.sock_sendall(sock, hello[7:])
        while True:  # finish the handshake
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            assert data, "closed during the handshake"
            incoming.write(data)
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await loop.sock_sendall(sock, outgoing.read())
        await loop.sock_sendall(sock, outgoing.read())
        for _ in range(100):
            if Records.made:
                break
            await asyncio.sleep(0.02)
        assert Records.made == ["split.example.com"]
    finally:
        sock.close()
        acceptor.close()


@pytest.mark.parametrize("extra, refused", [(0, False), (1, True)])
async def test_a_client_hello_over_64_kib_is_refused(certs, extra, refused):
    server, _ = certs
    acceptor, port = acceptor_on(server, first_byte_timeout=5.0)
    base = len(synthetic(b"big.example.com"))
    hello = synthetic(b"big.example.com", padding=MAX_CLIENT_HELLO - base + extra)
    assert len(hello) == MAX_CLIENT_HELLO + extra
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    try:
        await loop.sock_sendall(sock, hello)
        for _ in range(200):
            stats = acceptor.stats
            if stats.hello_too_large or stats.handshake_failed or stats.tls:
                break
            await asyncio.sleep(0.02)
        # at the bound the hello is read and handed to the handshake (which refuses our synthetic hello)
        assert (acceptor.stats.hello_too_large, acceptor.stats.tls) == ((1, 0) if refused else (0, 1))
    finally:
        sock.close()
        acceptor.close()

"""proxy/identity/tls.py: real TLS handshakes over loopback between contexts made from test certificates."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.identity.tls import TlsProvider, build_contexts, check_peer_identity, peer_identity
from tests.proxy.identity.testca import TestCa

SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/frontend"


class EchoServer:
    """Answers each line with the client's SPIFFE ID as the server saw it, then the line, on one connection."""

    def __init__(self, provider: TlsProvider) -> None:
        self.provider = provider
        self.server: asyncio.Server | None = None
        self.port = 0
        self.seen: list[str] = []
        self.refused = 0

    async def start(self) -> "EchoServer":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def _ssl(self) -> ssl.SSLContext:
        # a real server reads provider.current per accepted connection; asyncio takes one context per server,
        # so the test server follows the provider through a SNI callback that swaps the context per handshake
        assert self.provider.current is not None
        ctx = self.provider.current.server
        provider = self.provider

        def pick(sslobj: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            assert provider.current is not None
            sslobj.context = provider.current.server
        ctx.sni_callback = pick
        return ctx

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        who = peer_identity(writer.get_extra_info("peercert"))
        self.seen.append(who)
        try:
            while line := await reader.readline():
                writer.write(f"{who} {line.decode()}".encode())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
def ca() -> TestCa:
    return TestCa()


@pytest.fixture
async def server(ca: TestCa) -> AsyncIterator[EchoServer]:
    provider = TlsProvider()
    provider.update(ca.material(SERVER_ID), [ca.pem], 1)
    echo = await EchoServer(provider).start()
    yield echo
    echo.close()


async def connect(port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)


async def test_mutual_tls_handshake_and_the_spiffe_check_accepts_the_expected_peer(ca: TestCa,
                                                                                   server: EchoServer) -> None:
    client = build_contexts(ca.material(CLIENT_ID), [ca.pem])
    reader, writer = await connect(server.port, client.client)
    sslobj = writer.get_extra_info("ssl_object")
    assert check_peer_identity(sslobj.getpeercert(), SERVER_ID) == (True, SERVER_ID)
    assert sslobj.version() == "TLSv1.3"  # preferred when both speak it
    writer.write(b"hello\n")
    assert await reader.readline() == f"{CLIENT_ID} hello\n".encode()  # the server verified and read our ID
    writer.close()


async def test_the_spiffe_check_refuses_another_identity_and_names_what_it_found(ca: TestCa,
                                                                                 server: EchoServer) -> None:
    client = build_contexts(ca.material(CLIENT_ID), [ca.pem])
    _, writer = await connect(server.port, client.client)
    matched, found = check_peer_identity(writer.get_extra_info("peercert"),
                                         "spiffe://cluster.local/ns/default/sa/ratings")
    assert (matched, found) == (False, SERVER_ID)
    writer.close()


async def test_the_server_refuses_a_client_without_a_certificate(ca: TestCa, server: EchoServer) -> None:
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cadata=ca.pem)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await connect(server.port, bare)
        writer.write(b"hello\n")  # TLS 1.3: the server's refusal arrives after the client's handshake ends
        assert await reader.readline() == b""  # the server closed without answering
        raise ConnectionError("closed without an answer")
    assert server.seen == []  # never served


async def test_the_server_refuses_a_client_certificate_from_another_ca(ca: TestCa, server: EchoServer) -> None:
    other = TestCa("another root")
    client = build_contexts(other.material(CLIENT_ID), [other.pem, ca.pem])  # it trusts our server's root
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await connect(server.port, client.client)
        writer.write(b"hello\n")
        assert await reader.readline() == b""
        raise ConnectionError("closed without an answer")
    assert server.seen == []


async def test_the_client_refuses_a_server_from_another_ca(ca: TestCa, server: EchoServer) -> None:
    other = TestCa("another root")
    client = build_contexts(other.material(CLIENT_ID), [other.pem])  # trusts only the other root
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(server.port, client.client)


async def test_tls_1_2_is_accepted_as_the_minimum(ca: TestCa, server: EchoServer) -> None:
    client = build_contexts(ca.material(CLIENT_ID), [ca.pem])
    assert client.server.minimum_version == client.client.minimum_version == ssl.TLSVersion.TLSv1_2
    client.client.maximum_version = ssl.TLSVersion.TLSv1_2  # a peer without 1.3
    reader, writer = await connect(server.port, client.client)
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
    writer.write(b"hi\n")
    assert await reader.readline() == f"{CLIENT_ID} hi\n".encode()  # client certificate verified on 1.2 too
    writer.close()


async def test_rotation_new_connections_get_the_new_certificate_open_ones_keep_theirs(ca: TestCa,
                                                                                      server: EchoServer) -> None:
    """No dropped connection: an open connection keeps its context; the next handshake uses the new one."""
    client = build_contexts(ca.material(CLIENT_ID), [ca.pem])
    reader, writer = await connect(server.port, client.client)
    before = writer.get_extra_info("ssl_object").getpeercert()["serialNumber"]
    renewed = ca.material(SERVER_ID)
    server.provider.update(renewed, [ca.pem], 2)
    writer.write(b"still here\n")
    assert await reader.readline() == f"{CLIENT_ID} still here\n".encode()
    _, second = await connect(server.port, client.client)
    after = second.get_extra_info("ssl_object").getpeercert()["serialNumber"]
    assert int(after, 16) == int(renewed.serial, 16) and after != before
    writer.close()
    second.close()


def test_contexts_are_built_once_per_update_and_leave_no_key_file(ca: TestCa, tmp_path: Path) -> None:
    provider = TlsProvider()
    first = provider.update(ca.material(SERVER_ID), [ca.pem], 1)
    assert provider.current is first and provider.builds == 1
    build_contexts(ca.material(SERVER_ID), [ca.pem], private_dir=tmp_path)
    assert os.listdir(tmp_path) == []  # the key file is unlinked once loaded


def test_a_root_that_cannot_be_read_fails_the_build(ca: TestCa) -> None:
    with pytest.raises(ssl.SSLError):
        build_contexts(ca.material(SERVER_ID), ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])


async def test_the_server_sends_no_session_ticket(ca: TestCa, server: EchoServer) -> None:
    """Sidecars never resume a session, so the server context issues no TLS 1.3 ticket (each costs a seal and
    a write per handshake)."""
    client = build_contexts(ca.material(CLIENT_ID), [ca.pem])
    reader, writer = await connect(server.port, client.client)
    writer.write(b"hi\n")
    assert await reader.readline() == f"{CLIENT_ID} hi\n".encode()  # tickets arrive after the handshake
    tls = writer.get_extra_info("ssl_object")
    assert tls.version() == "TLSv1.3" and not tls.session.has_ticket
    writer.close()

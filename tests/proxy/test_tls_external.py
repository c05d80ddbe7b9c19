"""DestinationRule tls SIMPLE and MUTUAL to a server outside the mesh (proxy/tls/external.py, built through
proxy/tls/upstream.py as the sidecar builds it): the server checked against caCertificates and subjectAltNames
or sni, the client certificate presented for MUTUAL; connections pool apart from plaintext ones."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import uvloop

from proto.xds import ClientTls, Endpoint
from proxy.core.errors import UpstreamConnectError
from proxy.http.upstream_pool import ConnectionPool, key_for
from proxy.identity.tls import TlsProvider
from proxy.tls.upstream import UpstreamTls
from tests.proxy.tls_certs import TestCa

OUTSIDE = Endpoint(address="127.0.0.1")


class Quiet(asyncio.Protocol):
    pass


async def _server(context: ssl.SSLContext) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(Quiet, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


def _server_context(ca: TestCa, name: str, client_ca: TestCa | None = None) -> ssl.SSLContext:
    cert, key = ca.leaf("", name, dns=("api.example.com",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca is not None:  # MUTUAL: a client certificate from client_ca required
        context.load_verify_locations(cadata=client_ca.root_pem)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _run(body) -> None:  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(body())


def _ca_file(ca: TestCa) -> str:
    path = ca.dir / "ca.pem"
    path.write_text(ca.root_pem)
    return str(path)


def test_simple_verifies_the_server_against_ca_certificates_and_its_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ca, stranger = TestCa(tmp_path / "a"), TestCa(tmp_path / "b")
    upstream = UpstreamTls(TlsProvider())

    async def body() -> None:
        server, port = await _server(_server_context(ca, "api"))
        pool = ConnectionPool()
        for tls in (ClientTls(mode="SIMPLE", ca_certificates=_ca_file(ca), sni="api.example.com"),
                    ClientTls(mode="SIMPLE", ca_certificates=_ca_file(ca), subject_alt_names=["api.example.com"])):
            assert upstream.problem(tls) == ""
            origination = upstream.originate(tls, OUTSIDE)
            assert upstream.originate(tls, OUTSIDE) is origination  # one context per settings, made once
            conn = await pool.connect("127.0.0.1", port, tls=origination)
            assert conn.key == key_for("127.0.0.1", port, None, origination) != ("127.0.0.1", port)
            conn.transport.close()
        wrong_name = ClientTls(mode="SIMPLE", ca_certificates=_ca_file(ca), subject_alt_names=["db.example.com"])
        with pytest.raises(UpstreamConnectError, match="expected one of db.example.com, found api.example.com"):
            await pool.connect("127.0.0.1", port, tls=upstream.originate(wrong_name, OUTSIDE))
        wrong_sni = ClientTls(mode="SIMPLE", ca_certificates=_ca_file(ca), sni="db.example.com")
        with pytest.raises(UpstreamConnectError, match="TLS error"):
            await pool.connect("127.0.0.1", port, tls=upstream.originate(wrong_sni, OUTSIDE))
        with pytest.raises(UpstreamConnectError, match="TLS error"):  # a server our caCertificates did not sign
            await pool.connect("127.0.0.1", port, tls=upstream.originate(
                ClientTls(mode="SIMPLE", ca_certificates=_ca_file(stranger)), OUTSIDE))
        skip = upstream.originate(ClientTls(mode="SIMPLE", insecure_skip_verify=True), OUTSIDE)
        (await pool.connect("127.0.0.1", port, tls=skip)).transport.close()
        server.close()

    _run(body)


def test_mutual_presents_the_client_certificate_files(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "c").mkdir()
    server_ca, client_ca = TestCa(tmp_path / "s"), TestCa(tmp_path / "c")
    cert, key = client_ca.leaf("", "client", dns=("client.example.com",))
    upstream = UpstreamTls(TlsProvider())

    async def body() -> None:
        server, port = await _server(_server_context(server_ca, "api", client_ca))
        mutual = ClientTls(mode="MUTUAL", ca_certificates=_ca_file(server_ca), client_certificate=str(cert),
                           private_key=str(key), sni="api.example.com")
        conn = await ConnectionPool().connect("127.0.0.1", port, tls=upstream.originate(mutual, OUTSIDE))
        conn.transport.write(b"x")  # TLS 1.3: a refused client certificate shows on the first exchange
        await asyncio.sleep(0.05)
        assert not conn.transport.is_closing()
        conn.transport.close()
        server.close()

    _run(body)

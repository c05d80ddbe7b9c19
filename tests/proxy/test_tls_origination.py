"""The pool opens mutual TLS connections to an endpoint's sidecar and checks its SPIFFE identity
(proxy/tls/origination.py, proxy/http/upstream_pool.py), over real loopback TLS handshakes."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import uvloop

from proxy.core.errors import UpstreamConnectError
from proxy.core.target import Target
from proxy.http.upstream_pool import ConnectionPool, key_for
from proxy.tcp.relay import Relay, _Side
from proxy.tls.origination import TlsOrigination
from proxy.tls.peer import peer_principal
from proxy.tls.transport import DEFAULT, TRANSPORTS, configure
from tests.proxy.http_helpers import _Recorder
from tests.proxy.tls_certs import TestCa

SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/productpage"


class Recorder(asyncio.Protocol):
    seen: list[str | None] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Recorder.seen.append(peer_principal(transport))


async def _server(context: ssl.SSLContext) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(Recorder, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


def _run(body) -> None:  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # the sidecar's loop
        runner.run(body())


def test_connects_with_the_workload_certificate_and_pools_by_identity(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    client = ca.context(CLIENT_ID, "client", server=False)

    async def body() -> None:
        server, port = await _server(ca.context(SERVER_ID, "server", server=True))
        pool = ConnectionPool()
        tls = TlsOrigination(lambda: client, SERVER_ID)
        conn = await pool.connect("127.0.0.1", port, tls=tls)
        assert conn.key == key_for("127.0.0.1", port, None, tls) != ("127.0.0.1", port)
        await asyncio.sleep(0.05)
        assert Recorder.seen[-1] == "cluster.local/ns/default/sa/productpage"  # the server saw our identity
        pool.release(conn)
        assert pool.take(("127.0.0.1", port)) is None  # never handed to a plaintext request
        assert pool.take(conn.key) is conn
        conn.transport.close()
        server.close()

    _run(body)


def test_a_server_with_another_identity_is_refused_and_logged(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    client = ca.context(CLIENT_ID, "client", server=False)

    async def body() -> None:
        server, port = await _server(ca.context("spiffe://cluster.local/ns/default/sa/impostor", "srv", server=True))
        with pytest.raises(UpstreamConnectError, match="expected spiffe://cluster.local/ns/default/sa/reviews, "
                                                       "found spiffe://cluster.local/ns/default/sa/impostor"):
            await ConnectionPool().connect("127.0.0.1", port, tls=TlsOrigination(lambda: client, SERVER_ID))
        server.close()

    import proxy.tls.origination as origination

    logs: list[dict] = []
    saved, origination.log = origination.log, _Recorder(logs)  # capture_logs cannot see a cached logger
    try:
        _run(body)
    finally:
        origination.log = saved
    assert [(e["log_level"], e["expected"], e["found"]) for e in logs
            if e["event"].startswith("upstream identity mismatch")] == [
        ("warning", SERVER_ID, "spiffe://cluster.local/ns/default/sa/impostor")]


def test_a_server_from_another_ca_or_without_tls_fails_with_uf(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    (tmp_path / "other").mkdir()
    other = TestCa(tmp_path / "other", "other root")
    client = ca.context(CLIENT_ID, "client", server=False)

    async def body() -> None:
        server, port = await _server(other.context(SERVER_ID, "server", server=True))
        with pytest.raises(UpstreamConnectError, match="TLS error") as caught:
            await ConnectionPool().connect("127.0.0.1", port, tls=TlsOrigination(lambda: client, SERVER_ID))
        assert caught.value.flag == "UF"
        server.close()
        plain = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
        with pytest.raises(UpstreamConnectError):  # a plaintext server never answers the handshake
            await ConnectionPool(connect_timeout=0.5).connect("127.0.0.1", plain.sockets[0].getsockname()[1],
                                                              tls=TlsOrigination(lambda: client, SERVER_ID))
        plain.close()

    _run(body)


def test_no_certificate_yet_is_a_clear_connect_error(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(UpstreamConnectError, match="no certificate yet"):
            await ConnectionPool().connect("127.0.0.1", 9, tls=TlsOrigination(lambda: None, SERVER_ID))

    _run(body)


AUTO_SNI = "outbound_.9080_._.reviews.default.svc.cluster.local"  # what Istio's sidecars send for auto mTLS


def _naming_server(ca: TestCa) -> tuple[ssl.SSLContext, list[str | None]]:
    """A server context that records the server name of each ClientHello; its certificate has no DNS name."""
    names: list[str | None] = []
    context = ca.context(SERVER_ID, "server", server=True)
    context.sni_callback = lambda _obj, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    return context, names


@pytest.mark.parametrize("name", TRANSPORTS)
def test_the_sni_is_sent_on_either_transport_and_never_checked_as_a_host_name(tmp_path: Path, name: str) -> None:
    """The HTTP pool's and the mirror's path (connect_checked): Istio's cluster name goes out as the server name,
    and the server, whose certificate names only its SPIFFE ID, is accepted for that ID."""
    ca = TestCa(tmp_path)
    client = ca.context(CLIENT_ID, "client", server=False)
    server_ctx, names = _naming_server(ca)

    async def body() -> None:
        server, port = await _server(server_ctx)
        pool = ConnectionPool()
        conn = await pool.connect("127.0.0.1", port, tls=TlsOrigination(lambda: client, SERVER_ID, AUTO_SNI))
        conn.transport.close()
        await pool.connect("127.0.0.1", port, tls=TlsOrigination(lambda: client, SERVER_ID))  # no sni: none sent
        server.close()

    configure(name)
    try:
        _run(body)
    finally:
        configure(DEFAULT)
    assert names == [AUTO_SNI, None]


def test_the_tcp_relay_sends_the_sni_on_its_own_tls_layer(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    client = ca.context(CLIENT_ID, "client", server=False)
    server_ctx, names = _naming_server(ca)

    async def body() -> None:
        server, port = await _server(server_ctx)
        relay = Relay(lambda _client: target, lambda _relay: None)
        target = Target("127.0.0.1", port, "outbound|9080||reviews.default.svc.cluster.local",
                        tls=TlsOrigination(lambda: client, SERVER_ID, AUTO_SNI))
        up = _Side(relay)
        await relay.open(up, target)
        assert up.transport is not None
        up.transport.close()
        server.close()

    _run(body)
    assert names == [AUTO_SNI]

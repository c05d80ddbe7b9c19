"""The inbound acceptor tells mutual TLS from plaintext by the first byte and applies the port's mTLS mode
(proxy/tls/acceptor.py), over real loopback sockets and real TLS handshakes."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvloop

from proxy.tls.acceptor import DISABLE, PERMISSIVE, STRICT, TlsAcceptor
from proxy.tls.peer import peer_principal
from tests.proxy.tls_certs import TestCa

# The sidecar runs on uvloop (its C TLS transport); asyncio's own loop must behave the same.
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"uvloop": uvloop.new_event_loop,
                                                            "asyncio": asyncio.new_event_loop}

SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews"
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/productpage"


class Echo(asyncio.Protocol):
    """Answers each read with the peer's principal (or `plaintext`) and what it read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.principal = peer_principal(transport) or "plaintext"

    def data_received(self, data: bytes) -> None:
        self.transport.write(f"{self.principal}|".encode() + data)  # type: ignore[attr-defined]


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.ca = TestCa(tmp)
        self.server_ctx: ssl.SSLContext | None = self.ca.context(SERVER_ID, "server", server=True)
        self.client_ctx = self.ca.context(CLIENT_ID, "client", server=False)
        self.mode = PERMISSIVE
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.acceptor = TlsAcceptor(sock, Echo, lambda: self.mode, lambda: self.server_ctx,
                                    first_byte_timeout=0.5, handshake_timeout=2.0, max_pending=4)
        self.acceptor.start()

    async def plaintext(self, data: bytes = b"hello") -> bytes:
        """The answer; b"" when the connection was closed or reset without one (what curl shows as
        "Recv failure: Connection reset by peer" against Istio's STRICT mode)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            return await asyncio.wait_for(reader.read(200), 5)
        except ConnectionResetError:
            return b""
        finally:
            writer.close()

    async def tls(self, context: ssl.SSLContext | None = None, data: bytes = b"hello") -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=context or self.client_ctx,
                                                       ssl_handshake_timeout=5)
        try:
            found = writer.get_extra_info("ssl_object").getpeercert()["subjectAltName"]
            assert found == (("URI", SERVER_ID),)  # the client saw the server's identity
            writer.write(data)
            return await asyncio.wait_for(reader.read(200), 5)
        finally:
            writer.close()


Run = Callable[[Callable[[Setup], Awaitable[None]]], None]


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    """Runs a test body with a fresh Setup on the parametrized event loop."""
    def runner(body: Callable[[Setup], Awaitable[None]]) -> None:
        async def main() -> None:
            setup = Setup(tmp_path)
            try:
                await body(setup)
            finally:
                setup.acceptor.close()

        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner_:
            runner_.run(main())
    return runner


def test_permissive_serves_plaintext_and_mutual_tls_on_one_port_and_knows_the_peer(run: Run) -> None:
    async def body(setup: Setup) -> None:
        assert await setup.plaintext() == b"plaintext|hello"
        assert await setup.tls() == b"cluster.local/ns/default/sa/productpage|hello"
        assert setup.acceptor.stats.tls == 1 and setup.acceptor.stats.plaintext == 1

    run(body)


def test_strict_closes_plaintext_and_serves_mutual_tls(run: Run) -> None:
    async def body(setup: Setup) -> None:
        setup.mode = STRICT
        assert await setup.plaintext() == b""  # closed without an answer
        assert await setup.tls() == b"cluster.local/ns/default/sa/productpage|hello"
        assert setup.acceptor.stats.plaintext_refused == 1

    run(body)


def test_strict_refuses_a_client_without_a_certificate_or_from_another_ca(run: Run, tmp_path: Path) -> None:
    async def body(setup: Setup) -> None:
        setup.mode = STRICT
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(cadata=setup.ca.root_pem)
        (tmp_path / "other").mkdir()
        other = TestCa(tmp_path / "other", "other root")
        stranger = other.context(CLIENT_ID, "stranger", server=False)
        stranger.load_verify_locations(cadata=setup.ca.root_pem)  # it trusts our server; we must not trust it
        for context in (anonymous, stranger):
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, AssertionError)):
                reply = await setup.tls(context)
                assert reply  # TLS 1.3: the server's refusal can arrive after the client's handshake ends
        await asyncio.sleep(0.1)
        assert setup.acceptor.stats.handshake_failed == 2

    run(body)


def test_disable_takes_plaintext_only(run: Run) -> None:
    async def body(setup: Setup) -> None:
        setup.mode = DISABLE
        assert await setup.plaintext() == b"plaintext|hello"
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.TimeoutError, TimeoutError)):
            await asyncio.wait_for(setup.tls(), 1.5)  # the ClientHello reaches the plaintext protocol as data

    run(body)


def test_a_mode_change_applies_to_the_next_connection_and_open_ones_keep_theirs(run: Run) -> None:
    async def body(setup: Setup) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", setup.port)
        writer.write(b"one")
        assert await reader.read(100) == b"plaintext|one"
        setup.mode = STRICT  # as a pushed PeerAuthentication would
        writer.write(b"two")
        assert await reader.read(100) == b"plaintext|two"  # the open connection is not cut
        writer.close()
        assert await setup.plaintext() == b""
        setup.mode = PERMISSIVE
        assert await setup.plaintext() == b"plaintext|hello"

    run(body)


def test_tls_is_refused_while_the_workload_has_no_certificate(run: Run) -> None:
    async def body(setup: Setup) -> None:
        setup.server_ctx = None
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await setup.tls()
        assert await setup.plaintext() == b"plaintext|hello"  # PERMISSIVE plaintext still served
        assert setup.acceptor.stats.tls_refused == 1

    run(body)


def test_silent_connections_are_bounded_in_time_and_number(run: Run) -> None:
    async def body(setup: Setup) -> None:
        silent = [await asyncio.open_connection("127.0.0.1", setup.port) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert setup.acceptor.pending <= 4  # max_pending: the oldest were closed at once
        assert setup.acceptor.stats.overflow == 2
        for reader, _ in silent[:2]:
            assert await asyncio.wait_for(reader.read(10), 5) == b""
        await asyncio.sleep(0.8)  # past first_byte_timeout
        assert setup.acceptor.pending == 0 and setup.acceptor.stats.timed_out == 4
        for reader, writer in silent:
            assert await asyncio.wait_for(reader.read(10), 5) == b""  # each was closed
            writer.close()
        assert await setup.plaintext() == b"plaintext|hello"  # and the listener still serves

    run(body)


def test_a_client_holding_max_pending_silent_connections_does_not_lock_new_clients_out(run: Run) -> None:
    async def body(setup: Setup) -> None:
        silent = [await asyncio.open_connection("127.0.0.1", setup.port) for _ in range(4)]  # at max_pending
        await asyncio.sleep(0.2)
        assert setup.acceptor.pending == 4 and setup.acceptor.stats.overflow == 0
        assert await setup.plaintext() == b"plaintext|hello"  # one over: served, the oldest silent one closed
        assert await asyncio.wait_for(silent[0][0].read(10), 5) == b""
        assert setup.acceptor.stats.overflow == 1
        for _, writer in silent:
            writer.close()

    run(body)


def test_close_stops_accepting_and_closes_what_waits(run: Run) -> None:
    async def body(setup: Setup) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", setup.port)
        await asyncio.sleep(0.1)
        setup.acceptor.close()
        assert await asyncio.wait_for(reader.read(10), 5) == b""
        writer.close()
        with pytest.raises(OSError):
            await setup.plaintext()

    run(body)


def test_failed_handshakes_log_a_bounded_number_of_lines_and_count_the_rest() -> None:
    """Any client can fail handshakes at will (found by an attack): at most FAILURE_LINES info lines per
    FAILURE_WINDOW, the rest at debug and counted into the next info line; every one is counted in the stats."""
    import proxy.tls.acceptor as acceptor_module
    from tests.proxy.http_helpers import _Recorder

    logs: list[dict] = []
    saved, acceptor_module.log = acceptor_module.log, _Recorder(logs)

    async def body() -> None:
        sock = socket.socket()
        acceptor = TlsAcceptor(sock, asyncio.Protocol, lambda: STRICT, lambda: None)
        for _ in range(25):
            acceptor._failed("127.0.0.1:1", ssl.SSLError("PEER_DID_NOT_RETURN_A_CERTIFICATE"))
        infos = [e for e in logs if e["log_level"] == "info"]
        assert len(infos) == acceptor_module.FAILURE_LINES and acceptor.stats.handshake_failed == 25
        assert infos[0]["peer"] == "127.0.0.1:1" and "not_logged_before" not in infos[0]
        acceptor._window_start -= acceptor_module.FAILURE_WINDOW  # the next window
        acceptor._failed("127.0.0.1:2", ssl.SSLError("TLSV1_ALERT_UNKNOWN_CA"))
        last = [e for e in logs if e["log_level"] == "info"][-1]
        assert last["peer"] == "127.0.0.1:2" and last["not_logged_before"] == 15
        sock.close()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(body())
    finally:
        acceptor_module.log = saved


def test_failed_handshake_lines_at_their_bound_and_one_over_and_the_window_edge() -> None:
    """FAILURE_LINES failures in a window are each an info line; the next one is not; a window is over only
    after FAILURE_WINDOW seconds (one second short of it still counts into the old one)."""
    import proxy.tls.acceptor as acceptor_module
    from tests.proxy.http_helpers import _Recorder

    logs: list[dict] = []
    saved, acceptor_module.log = acceptor_module.log, _Recorder(logs)

    def infos() -> int:
        return sum(1 for e in logs if e["log_level"] == "info")

    async def body() -> None:
        sock = socket.socket()
        acceptor = TlsAcceptor(sock, asyncio.Protocol, lambda: STRICT, lambda: None)
        for _ in range(acceptor_module.FAILURE_LINES):  # at the bound: each one logged
            acceptor._failed("127.0.0.1:1", ssl.SSLError("x"))
        assert infos() == acceptor_module.FAILURE_LINES
        acceptor._failed("127.0.0.1:1", ssl.SSLError("x"))  # one over: debug only
        assert infos() == acceptor_module.FAILURE_LINES
        acceptor._window_start -= acceptor_module.FAILURE_WINDOW - 1  # one second short of the window
        acceptor._failed("127.0.0.1:1", ssl.SSLError("x"))
        assert infos() == acceptor_module.FAILURE_LINES
        acceptor._window_start -= 1  # the window has passed
        acceptor._failed("127.0.0.1:1", ssl.SSLError("x"))
        assert infos() == acceptor_module.FAILURE_LINES + 1 and logs[-1]["not_logged_before"] == 2
        assert acceptor.stats.handshake_failed == acceptor_module.FAILURE_LINES + 3
        sock.close()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(body())
    finally:
        acceptor_module.log = saved

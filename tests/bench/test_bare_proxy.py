"""bench/dataplane/bare_proxy.py, the benchmark's bare pass-through: correct for the benchmark's traffic
(keep-alive GETs with fixed-size bodies) and never hanging on chunked responses or on a connection that
ends, whichever side ends it. On loopback, against a tiny upstream of our own; the proxy runs both
in-process (asyncio's loop) and as the benchmark runs it (`python -m bench.dataplane.bare_proxy`, uvloop), and as
the `bare-tls-pair` row runs it: two processes with mutual TLS 1.3 between them (the client side originating with
its certificate and verifying the server's, the server side requiring and verifying the client's), on uvloop's
SSL transport and on aiofastnet's, so the framing tests cross a TLS hop both ways."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.dataplane.bare_proxy import Downstream, serve
from bench.dataplane.mtls import SERVER_NAME, Certs, make_certs
from isthmus.launch import ManagedProcess, accepts, free_port, project_env

FIXED = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
UNTIL_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
WAIT = 5.0  # generous: every step takes milliseconds; a hang fails the test instead of stalling it


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers GET /fixed, /chunked and /until-close; keeps the connection open until the client's EOF
    (or after /until-close, whose body ends with the close)."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            path = head.split(b" ", 2)[1]
            if path == b"/until-close":
                writer.write(UNTIL_CLOSE)
                return
            writer.write(CHUNKED if path == b"/chunked" else FIXED)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))  # the throwaway CA the benchmark's TLS rows use


@contextmanager
def bare(upstream: int, *tls: str) -> Iterator[int]:
    """`python -m bench.dataplane.bare_proxy` forwarding to 127.0.0.1:upstream, with the TLS flags given: its port."""
    port = free_port()
    proc = ManagedProcess("bare-proxy", [sys.executable, "-m", "bench.dataplane.bare_proxy", "--port", str(port),
                                         "--upstream", str(upstream), *tls], env=project_env()).start()
    try:
        for _ in range(200):  # up to ~10 s on a loaded machine
            if accepts(port) or not proc.is_running:
                break
            time.sleep(0.05)
        assert proc.is_running, f"the bare proxy exited with {proc.returncode}:\n{proc.log_tail()}"
        yield port
    finally:
        proc.stop(2)


def tls_pair_flags(certs: Certs, transport: str) -> tuple[list[str], list[str]]:
    """(the client side's flags, the server side's): the benchmark's bare-tls-pair."""
    common = ["--ca", str(certs.ca), "--tls-transport", transport]
    return ([*common, "--tls-client", str(certs.client), "--server-name", SERVER_NAME],
            [*common, "--tls-server", str(certs.server)])


@pytest.fixture(params=["in-process", "uvloop process", "mTLS pair, uvloop", "mTLS pair, aiofastnet"])
async def proxy(request: pytest.FixtureRequest, certs: Certs) -> AsyncIterator[int]:
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    origin_port = origin.sockets[0].getsockname()[1]
    if request.param == "in-process":
        server = await serve(0, origin_port)
        yield server.sockets[0].getsockname()[1]
        server.close()
    elif request.param == "uvloop process":
        with bare(origin_port) as port:
            yield port
    else:  # load -> client side (plaintext in, mutual TLS out) -> server side (TLS in) -> origin
        client_flags, server_flags = tls_pair_flags(certs, request.param.rsplit(" ", 1)[1])
        with bare(origin_port, *server_flags) as server_port, bare(server_port, *client_flags) as port:
            yield port
    origin.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench-backend:9080\r\n{extra}\r\n".encode()


async def read_exactly(reader: asyncio.StreamReader, expected: bytes) -> None:
    assert await asyncio.wait_for(reader.readexactly(len(expected)), WAIT) == expected


async def test_keep_alive_gets_with_fixed_bodies_share_one_connection(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    for _ in range(3):
        writer.write(get("/fixed"))
        await read_exactly(reader, FIXED)
    writer.write(get("/fixed") + get("/fixed"))  # pipelined
    await read_exactly(reader, FIXED + FIXED)
    writer.close()


async def test_a_chunked_response_passes_whole_and_the_connection_stays_usable(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/chunked"))
    await read_exactly(reader, CHUNKED)
    writer.write(get("/fixed"))
    await read_exactly(reader, FIXED)
    writer.close()


async def test_a_request_saying_connection_close_is_answered_then_the_proxy_closes(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/fixed", "Connection: close\r\n"))  # the upstream itself would keep the connection open
    assert await asyncio.wait_for(reader.read(), WAIT) == FIXED  # read() returns at EOF
    writer.close()


async def test_a_response_ended_by_the_upstreams_close_arrives_whole_then_eof(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/fixed") + get("/until-close"))
    assert await asyncio.wait_for(reader.read(), WAIT) == FIXED + UNTIL_CLOSE
    writer.close()


async def test_a_client_half_close_still_gets_its_response_then_eof(proxy: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(get("/chunked"))
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), WAIT) == CHUNKED
    writer.close()


async def test_no_upstream_closes_the_client_instead_of_hanging() -> None:
    server = await serve(0, free_port())  # nothing listens there
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(get("/fixed"))
        try:
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        except ConnectionResetError:
            pass  # the proxy aborts: a reset is the expected way to learn it
        writer.close()
    finally:
        server.close()



class RecordingTransport:
    """The client side of a Downstream, without a socket: what the proxy writes to the client and does."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


async def test_bytes_and_eof_that_arrive_before_the_upstream_connection_wait_for_it() -> None:
    """uvloop may deliver a read right after connection_made although it paused reading (the smoke run's
    bare pair lost every connection that way): those bytes and a half-close reach the upstream once connected."""
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    try:
        down = Downstream(origin.sockets[0].getsockname()[1])
        client = RecordingTransport()
        down.connection_made(client)  # type: ignore[arg-type]
        down.data_received(get("/fixed") + get("/chunked"))  # before the upstream connection exists
        assert not client.reading  # held, and no more read until it can be forwarded
        down.eof_received()
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.05)
        assert bytes(client.written) == FIXED + CHUNKED
        assert client.closed  # the upstream got the half-close, answered, closed: so did the proxy
    finally:
        origin.close()


def _client_context(certs: Certs, cert: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certs.ca)
    if cert is not None:
        ctx.load_cert_chain(cert)
    return ctx


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
async def test_the_tls_server_side_requires_a_client_certificate_from_its_ca(certs: Certs, transport: str) -> None:
    """Mutual TLS as the row claims: with the CA's client certificate a request passes; without one, or with a
    certificate from another CA, no request reaches the upstream."""
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    other = make_certs(certs.ca.parent / f"other-{transport}")
    try:
        _, server_flags = tls_pair_flags(certs, transport)
        with bare(origin.sockets[0].getsockname()[1], *server_flags) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_context(certs, certs.client),
                                                           server_hostname=SERVER_NAME)
            writer.write(get("/fixed"))
            await read_exactly(reader, FIXED)
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
            writer.close()
            for cert in (None, other.client):
                ctx = _client_context(certs, cert)
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        "127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME), WAIT)
                    writer.write(get("/fixed"))  # TLS 1.3: the server's refusal may come after our handshake
                    assert await asyncio.wait_for(reader.read(), WAIT) == b""
                except (ssl.SSLError, ConnectionError):
                    pass  # refused: the alert, or the connection reset
                else:
                    writer.close()
    finally:
        origin.close()


@pytest.mark.parametrize("transport", ["uvloop", "aiofastnet"])
async def test_the_tls_client_side_refuses_an_upstream_whose_certificate_names_another_host(
        certs: Certs, transport: str) -> None:
    """The client side verifies the server: an upstream presenting a valid certificate for another name (here the
    client certificate, CN bench-client) gets no request; the client sees its connection closed, not a hang."""
    origin = await asyncio.start_server(upstream, "127.0.0.1", 0)
    try:
        client_flags, _ = tls_pair_flags(certs, transport)
        wrong = ["--ca", str(certs.ca), "--tls-transport", transport, "--tls-server", str(certs.client)]
        with bare(origin.sockets[0].getsockname()[1], *wrong) as server_port, bare(server_port, *client_flags) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(get("/fixed"))
            try:
                assert await asyncio.wait_for(reader.read(), WAIT) == b""
            except ConnectionResetError:
                pass
            writer.close()
    finally:
        origin.close()

"""proxy/http/connect_tunnel.py: CONNECT on the outbound listener tunnels bytes; errors are HTTP answers."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import closed, read_response, refused_port

from proxy.core.errors import BlackHole, ConnectRefused, ProxyError
from proxy.core.access import AccessRecord
from proxy.http.head import Mode
from proxy.core.target import Target
from proxy.tcp import relay

pytestmark = pytest.mark.timeout(30)


class TunnelRouter:
    def __init__(self, targets: dict[str, Target | ProxyError]) -> None:
        self.targets = targets

    def pick(self, head):  # type: ignore[no-untyped-def]
        raise AssertionError("plain HTTP not expected")

    def connect_pick(self, host: str, port: int, client: str = "") -> Target:
        target = self.targets[host]
        if isinstance(target, ProxyError):
            raise target
        return target


class Echo:
    """A TCP server: echoes, says `bye` after the client's EOF and closes; or, with `read=False`, reads nothing."""

    def __init__(self, read: bool = True) -> None:
        self.read = read
        self.eof_seen = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Echo:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if not self.read:
            await asyncio.sleep(3600)
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        self.eof_seen.set()
        writer.write(b"bye")
        await writer.drain()
        writer.close()


@pytest.fixture
async def tunnel_proxy(proxy_for):  # type: ignore[no-untyped-def]
    records: list[AccessRecord] = []

    async def start(targets, mode=Mode.OUTBOUND):  # type: ignore[no-untyped-def]
        return await proxy_for(TunnelRouter(targets), mode, on_complete=records.append)

    start.records = records  # type: ignore[attr-defined]
    return start


async def wait_for(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_a_tunnel_carries_bytes_both_ways_and_a_half_close_reaches_the_server(tunnel_proxy):
    async with Echo() as echo:
        reader, writer = await tunnel_proxy({"secure.example": Target("127.0.0.1", echo.port, "PassthroughCluster")})
        writer.write(b"CONNECT secure.example:443 HTTP/1.1\r\nHost: secure.example:443\r\n\r\nearly bytes|")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 200 Connection Established\r\n\r\n"
        assert await asyncio.wait_for(reader.readexactly(12), 5) == b"early bytes|"
        writer.write(b"GET / HTTP/1.1\r\n\r\n")  # anything: it is not parsed any more
        assert await asyncio.wait_for(reader.readexactly(18), 5) == b"GET / HTTP/1.1\r\n\r\n"
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"bye"  # the server saw our EOF and still answered
        await asyncio.wait_for(echo.eof_seen.wait(), 5)
    await wait_for(lambda: tunnel_proxy.records)
    record: AccessRecord = tunnel_proxy.records[0]
    assert (record.method, record.host, record.status, record.flag, record.cluster) == (
        "CONNECT", "secure.example:443", 200, "-", "PassthroughCluster")
    assert record.bytes_sent == 12 + 18 + 3


async def test_a_server_that_reads_nothing_stops_the_proxy_reading_the_client(tunnel_proxy):
    async with Echo(read=False) as sink:
        reader, writer = await tunnel_proxy({"s": Target("127.0.0.1", sink.port, "PassthroughCluster")})
        writer.write(b"CONNECT s:443 HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        chunk = b"x" * (1 << 20)
        with pytest.raises(TimeoutError):  # 64 MiB never fit in the sockets and the proxy's bounded buffers
            async with asyncio.timeout(3):
                for _ in range(64):
                    writer.write(chunk)
                    await writer.drain()


async def test_an_idle_tunnel_is_closed(tunnel_proxy, monkeypatch):
    monkeypatch.setattr(relay, "DEFAULT_IDLE_TIMEOUT", 0.3)
    async with Echo() as echo:
        reader, writer = await tunnel_proxy({"s": Target("127.0.0.1", echo.port, "PassthroughCluster")})
        loop = asyncio.get_running_loop()
        t0 = loop.time()  # before CONNECT: the idle timer starts when the tunnel is up, before its 200 reaches us
        writer.write(b"CONNECT s:443 HTTP/1.1\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert await closed(reader)
        assert 0.3 <= loop.time() - t0 < 3.0


@pytest.mark.parametrize("request_line, status, flag", [
    (b"CONNECT refused.example:443", 503, "UF"),
    (b"CONNECT blocked.example:443", 502, "UH"),
    (b"CONNECT refused.example", 400, "DPE"),
    (b"CONNECT reviews:9080", 403, "-"),
])
async def test_a_tunnel_that_cannot_open_is_answered_and_closed(tunnel_proxy, request_line, status, flag):
    with refused_port() as port:
        reader, writer = await tunnel_proxy({"refused.example": Target("127.0.0.1", port, "PassthroughCluster"),
                                             "blocked.example": BlackHole("not in the registry", flag="UH"),
                                             "reviews": ConnectRefused("an HTTP port of the mesh")})
        writer.write(request_line + b" HTTP/1.1\r\n\r\n")
        resp = await read_response(reader)
    assert resp.status == status and resp.header(b"connection") == b"close"
    assert await closed(reader)
    await wait_for(lambda: tunnel_proxy.records)
    record = tunnel_proxy.records[0]
    assert (record.status, record.flag) == (status, flag)
    assert record.cluster == {"UF": "PassthroughCluster", "UH": "BlackHoleCluster", "DPE": "-", "-": "-"}[flag]


async def test_the_inbound_listener_refuses_connect(tunnel_proxy):
    reader, writer = await tunnel_proxy({}, Mode.INBOUND)
    writer.write(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n")
    assert (await read_response(reader)).status == 400

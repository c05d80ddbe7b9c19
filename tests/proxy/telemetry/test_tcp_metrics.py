"""Istio's TCP metrics over loopback relays (proxy/tcp/metrics.py): opened, bytes each way while a connection
is open and at its close, closed; a connection that could not be relayed counts in one series with its flag."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import refused_port

from proto.observations import TCP_LABELS
from proto.xds import Endpoint
from proxy.core.target import Target
from proxy.tcp.listener import TcpListener
from proxy.tcp.metrics import TcpMetrics
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.metrics import TcpRecorder

pytestmark = pytest.mark.timeout(30)

ME = LocalWorkload("sleep", "foo", {"app": "sleep"})
DB = Endpoint(address="127.0.0.1", labels={"app": "db", "version": "v1"}, workload_name="db-v1",
              identity="spiffe://cluster.local/ns/foo/sa/db")


def labels(counts: object) -> dict[str, str]:
    return dict(zip(TCP_LABELS, counts.labels))  # type: ignore[attr-defined]


async def eventually(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_open_connection_shows_its_bytes_when_read_and_the_rest_at_close():
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data * 2)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder = TcpRecorder("outbound_tcp", "source")
    listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", port, "outbound|5432||db.foo.svc."
                                                                 "cluster.local", DB), "outbound db:5432", "db:5432",
                           metrics=TcpMetrics(recorder, ME, outbound=True))
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"hellohello"
        listener.sweep_metrics()  # as a scrape does
        (counts,) = recorder.all()
        assert (counts.opened, counts.closed, counts.received, counts.sent) == (1, 0, 5, 10)
        listener.sweep_metrics()  # nothing new: nothing added twice
        assert (counts.received, counts.sent) == (5, 10)
        writer.write(b"abc")
        assert await asyncio.wait_for(reader.readexactly(6), 5) == b"abcabc"
        writer.close()
        await eventually(lambda: counts.closed == 1)
        assert (counts.opened, counts.received, counts.sent) == (1, 8, 16)
        found = labels(counts)
        assert (found["reporter"], found["source_workload"], found["destination_workload"],
                found["destination_service"], found["request_protocol"], found["response_flags"]) == (
            "source", "sleep", "db-v1", "db.foo.svc.cluster.local", "tcp", "-")
    finally:
        await listener.stop()
        server.close()


async def test_a_connection_never_relayed_counts_opened_and_closed_in_its_flags_series():
    recorder = TcpRecorder("outbound_tcp", "source")
    with refused_port() as port:
        listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", port, "outbound|5432||db.foo.svc."
                                                                     "cluster.local", DB), "outbound db:5432",
                               "db:5432", metrics=TcpMetrics(recorder, ME, outbound=True))
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(b"x")
            await eventually(lambda: recorder.all() and recorder.all()[0].closed == 1)
            writer.close()
        finally:
            await listener.stop()
    (counts,) = recorder.all()
    assert (counts.opened, counts.closed, counts.sent) == (1, 1, 0)
    assert labels(counts)["response_flags"] == "UF"


async def test_inbound_connections_are_reported_by_the_destination_without_peer_metadata():
    recorder = TcpRecorder("inbound_tcp", "destination")

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    me = LocalWorkload("db", "foo", {"app": "db", "version": "v1"})
    listener = TcpListener("127.0.0.1", 0, lambda client: Target("127.0.0.1", port, "inbound|5432||"), "inbound 5432",
                           metrics=TcpMetrics(recorder, me, outbound=False))
    await listener.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(b"12345")
        writer.write_eof()
        await eventually(lambda: recorder.all() and recorder.all()[0].closed == 1)
        writer.close()
    finally:
        await listener.stop()
        server.close()
    (counts,) = recorder.all()
    found = labels(counts)
    assert (counts.received, found["reporter"], found["source_workload"], found["destination_workload"],
            found["connection_security_policy"]) == (5, "destination", "unknown", "db-v1", "none")


async def test_a_connect_tunnel_through_the_outbound_listener_counts_as_outbound_tcp(start_proxy, connect):
    from tests.proxy.test_connect_tunnel import Echo, TunnelRouter

    recorder = TcpRecorder("outbound_tcp", "source")
    metrics = TcpMetrics(recorder, ME, outbound=True)
    async with Echo() as echo:
        router = TunnelRouter({"api.example.com": Target("127.0.0.1", echo.port, "PassthroughCluster")})
        proxy = await start_proxy(router)
        proxy.state.tunnel_metrics = metrics
        reader, writer = await connect(proxy.port)
        writer.write(b"CONNECT api.example.com:443 HTTP/1.1\r\nhost: api.example.com:443\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 200 Connection Established\r\n\r\n"
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        metrics.sweep_tunnels()  # as a scrape does, while it is open
        (counts,) = recorder.all()
        assert (counts.opened, counts.closed, counts.received, counts.sent) == (1, 0, 4, 4)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"bye"
        await eventually(lambda: counts.closed == 1)
    assert (counts.opened, counts.received, counts.sent) == (1, 4, 7) and not metrics.tunnels
    found = labels(counts)
    assert (found["destination_service"], found["destination_service_name"]) == ("api.example.com",
                                                                                 "PassthroughCluster")

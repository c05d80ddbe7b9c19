"""proxy/dns/server.py: the DNS server over UDP and TCP on loopback, with its bounds."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.message
import dns.rcode
import pytest

from proxy.dns import server as server_mod
from proxy.dns.answer import MAX_QUERY_BYTES
from proxy.dns.server import DnsServer
from tests.proxy.dns.test_answer import addresses, lookup, padded_query

WAIT = 3.0  # generous: the bounds below are configured far shorter


@pytest.fixture
async def dns_server():
    server = DnsServer("127.0.0.1", 0, lookup)
    await server.start()
    yield server
    await server.stop()


async def udp_ask(port: int, wire: bytes, timeout: float = WAIT) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, wire)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def tcp_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def tcp_read(reader: asyncio.StreamReader) -> dns.message.Message:
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), WAIT), "big")
    return dns.message.from_wire(await asyncio.wait_for(reader.readexactly(size), WAIT))


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


async def is_closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), WAIT) == b""
    except ConnectionResetError:
        return True


async def test_udp_queries_are_answered(dns_server: DnsServer) -> None:
    wire = await udp_ask(dns_server.port, dns.message.make_query("reviews", "A").to_wire())
    assert wire is not None and addresses(dns.message.from_wire(wire)) == ["127.240.3.7"]


async def test_tcp_answers_pipelined_queries_in_order(dns_server: DnsServer) -> None:
    reader, writer = await tcp_connect(dns_server.port)
    first, second = dns.message.make_query("reviews", "A"), dns.message.make_query("edition.cnn.com", "A")
    writer.write(framed(first.to_wire()) + framed(second.to_wire()))
    one, two = await tcp_read(reader), await tcp_read(reader)
    assert (one.id, addresses(one)) == (first.id, ["127.240.3.7"])
    assert (two.id, addresses(two)) == (second.id, ["127.250.1.9"])
    writer.close()


async def test_a_malformed_udp_packet_is_dropped_and_the_server_answers_on(dns_server: DnsServer) -> None:
    assert await udp_ask(dns_server.port, b"\x12\x34garbage", timeout=0.3) is None
    wire = await udp_ask(dns_server.port, dns.message.make_query("reviews", "A").to_wire())
    assert wire is not None


async def test_a_tcp_query_of_max_query_bytes_is_answered_and_a_longer_prefix_closes(dns_server: DnsServer) -> None:
    reader, writer = await tcp_connect(dns_server.port)
    writer.write(framed(padded_query(MAX_QUERY_BYTES)))
    assert addresses(await tcp_read(reader)) == ["127.240.3.7"]
    writer.write((MAX_QUERY_BYTES + 1).to_bytes(2, "big"))  # a prefix alone is enough to refuse
    assert await is_closed(reader)
    writer.close()


async def test_a_malformed_tcp_query_closes_the_connection(dns_server: DnsServer) -> None:
    reader, writer = await tcp_connect(dns_server.port)
    writer.write(framed(b"\x00\x01not dns at all"))
    assert await is_closed(reader)
    writer.close()


async def test_past_the_cap_a_new_tcp_connection_closes_the_least_recently_active(
        dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_mod, "MAX_TCP_CONNECTIONS", 2)
    held = [await tcp_connect(dns_server.port) for _ in range(2)]
    for reader, writer in reversed(held):  # both served: at the cap, not past it; the first asked last
        writer.write(framed(dns.message.make_query("reviews", "A").to_wire()))
        assert addresses(await tcp_read(reader)) == ["127.240.3.7"]
    reader, writer = await tcp_connect(dns_server.port)  # one over: served, and the second (idle longest) goes
    writer.write(framed(dns.message.make_query("reviews", "A").to_wire()))
    assert addresses(await tcp_read(reader)) == ["127.240.3.7"]
    assert await is_closed(held[1][0])
    assert dns_server.refused == 1 and len(dns_server.tcp_connections) == 2
    held[0][1].write(framed(dns.message.make_query("reviews", "A").to_wire()))  # the recently active one stays
    assert addresses(await tcp_read(held[0][0])) == ["127.240.3.7"]
    for _, w in [*held, (reader, writer)]:
        w.close()


async def test_an_idle_tcp_connection_is_closed(dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_mod, "TCP_IDLE_TIMEOUT", 0.3)
    reader, writer = await tcp_connect(dns_server.port)
    writer.write(b"\x00")  # half a length prefix, then nothing
    began = time.monotonic()
    assert await is_closed(reader)
    assert time.monotonic() - began < WAIT
    assert not dns_server.tcp_connections
    writer.close()


async def test_refused_names_over_udp(dns_server: DnsServer) -> None:
    wire = await udp_ask(dns_server.port, dns.message.make_query("example.com", "A").to_wire())
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.REFUSED


async def test_a_taken_port_raises_and_leaves_nothing_bound(dns_server: DnsServer) -> None:
    other = DnsServer("127.0.0.1", dns_server.port, lookup)
    with pytest.raises(OSError):
        await other.start()
    tcp_taken = socket.socket()
    tcp_taken.bind(("127.0.0.1", 0))
    tcp_taken.listen()
    try:
        third = DnsServer("127.0.0.1", tcp_taken.getsockname()[1], lookup)  # UDP free, TCP taken
        with pytest.raises(OSError):
            await third.start()
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", tcp_taken.getsockname()[1]))  # the UDP socket was released
        probe.close()
    finally:
        tcp_taken.close()


class FakeTransport:
    """A transport whose write buffer holds `buffered` bytes; records what was sent and whether it was cut."""

    def __init__(self, buffered: int) -> None:
        self.buffered, self.sent, self.aborted = buffered, [], False  # type: ignore[var-annotated]

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append(data)

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.parametrize("buffered, sent", [(server_mod.UDP_WRITE_BUFFER_MAX - 1, 1), (server_mod.UDP_WRITE_BUFFER_MAX, 0)])
def test_udp_responses_are_dropped_not_buffered_once_the_limit_waits(buffered: int, sent: int) -> None:
    server = DnsServer("127.0.0.1", 0, lookup)
    udp = server_mod._UdpQueries(server)
    transport = FakeTransport(buffered)
    udp.connection_made(transport)  # type: ignore[arg-type]
    udp.datagram_received(dns.message.make_query("reviews", "A").to_wire(), ("127.0.0.1", 5353))
    assert len(transport.sent) == sent and server.dropped == 1 - sent


@pytest.mark.parametrize("buffered, cut", [(server_mod.TCP_WRITE_BUFFER_MAX, False),
                                           (server_mod.TCP_WRITE_BUFFER_MAX + 1, True)])
async def test_a_tcp_client_that_lets_answers_pile_up_is_cut(buffered: int, cut: bool) -> None:
    server = DnsServer("127.0.0.1", 0, lookup)
    tcp = server_mod._TcpQueries(server)
    transport = FakeTransport(buffered)
    tcp.connection_made(transport)  # type: ignore[arg-type]
    tcp.data_received(framed(dns.message.make_query("reviews", "A").to_wire()))
    assert len(transport.sent) == 1 and transport.aborted is cut
    tcp.connection_lost(None)

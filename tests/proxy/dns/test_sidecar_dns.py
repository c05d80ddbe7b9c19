"""proxy/dns/sidecar.py and listeners.py: pushes make and close the per-service listeners, DNS answers only
what is bound, and a service's loopback address routes as its name (Host and plain connections)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from proto.xds import ClusterConfig, Endpoint, Push
from proxy.control.config_state import ConfigState
from proxy.dns.listeners import HTTP, TCP
from proxy.dns.sidecar import SidecarDns, services_of
from proxy.http.listener import Listener
from proxy.outbound.router import MeshRouter
from proxy.tcp.listener import TcpListener
from proxy.tcp.relay import Picker
from tests.proxy.http_helpers import Upstream, keep_alive_echo, read_response

REVIEWS = "reviews.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster(host: str, port: int, upstream_port: int, tcp: bool = False, **fields: object) -> ClusterConfig:
    return ClusterConfig(host=host, version=1, ports=[port], tcp_ports=[port] if tcp else [],
                         endpoints=[Endpoint(address="127.0.0.1", ports={port: upstream_port}, labels={})], **fields)


class Mesh:
    """A ConfigState, its MeshRouter, an outbound listener and the sidecar's DNS over them (port 0)."""

    def __init__(self, pool) -> None:  # type: ignore[no-untyped-def]
        self.state = ConfigState()
        self.router = MeshRouter(self.state)
        self.outbound = Listener("127.0.0.1", 0, self.router, pool, "outbound")
        self.seq = 0
        self.dns = SidecarDns(0, self.state, self.router, self.outbound.state, self.make_tcp, "default",
                              "svc.cluster.local")
        self.state.on_apply.append(self.dns.changed)

    def make_tcp(self, fqdn: str, address: str, port: int) -> TcpListener:
        pick: Picker = lambda client: self.router.tcp_pick(fqdn, port, client)  # noqa: E731
        return TcpListener(address, port, pick, f"outbound {fqdn}:{port}", f"{fqdn}:{port}")

    async def push(self, *clusters: ClusterConfig) -> None:
        self.seq += 1
        self.state.apply(Push(epoch="e", seq=self.seq, version=self.seq, full=True, clusters=list(clusters)))
        await self.settled()

    async def settled(self) -> None:
        for _ in range(100):  # the reconcile task runs a loop turn or a few after the push
            await asyncio.sleep(0.01)
            if not self.dns._changed.is_set():
                await asyncio.sleep(0.01)
                return
        raise AssertionError("dns did not reconcile")


@pytest.fixture
async def mesh(pool):  # type: ignore[no-untyped-def]
    mesh = Mesh(pool)
    await mesh.outbound.start()
    await mesh.dns.start()
    yield mesh
    await mesh.dns.stop()
    await mesh.outbound.stop(grace=0.5)


async def get(address: str, port: int, host: str) -> bytes:
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(b"GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
        response = await asyncio.wait_for(read_response(reader), 3)
        return response.body
    finally:
        writer.close()


def test_services_of_lists_services_with_ports_and_their_protocols() -> None:
    state = ConfigState()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[
        ClusterConfig(host=REVIEWS, version=1, ports=[9080, 9443], tcp_ports=[9443]),
        ClusterConfig(host="portless.default.svc.cluster.local", version=1),  # a DestinationRule's host alone
        ClusterConfig(host="*.wikipedia.org", version=1, ports=[443], tcp_ports=[443]),
        ClusterConfig(host="10.1.2.3", version=1, ports=[80])]))
    assert services_of(state.table) == {REVIEWS: [(9080, HTTP), (9443, TCP)]}


async def test_a_service_gets_an_address_a_listener_and_a_dns_answer(mesh: Mesh) -> None:
    port = free_port()
    async with Upstream(keep_alive_echo) as up:
        await mesh.push(cluster(REVIEWS, port, up.port))
        address = mesh.dns.known[REVIEWS]
        assert address.startswith("127.") and address != "127.0.0.1"
        assert mesh.dns.lookup("reviews") == (address, True)
        assert mesh.dns.lookup("reviews.default.svc.cluster.local") == (address, True)
        # the app's plain URL: Host is the name it used, routed as the outbound listener routes it
        assert await get(address, port, f"reviews:{port}") == b"hello /hello"
        # curl http://<address>:<port>/: Host is the address, which means the service (Istio: the VIP's domain)
        assert await get(address, port, f"{address}:{port}") == b"hello /hello"
        assert len(up.requests) == 2


async def test_the_service_listener_shares_the_outbound_listeners_state(mesh: Mesh) -> None:
    port = free_port()
    async with Upstream(keep_alive_echo) as up:
        await mesh.push(cluster(REVIEWS, port, up.port))
        reader, writer = await asyncio.open_connection(mesh.dns.known[REVIEWS], port)
        writer.write(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        await asyncio.wait_for(read_response(reader), 3)
        assert len(mesh.outbound.state.connections) == 1  # its connection is the outbound listener's
        writer.close()


async def test_a_service_that_disappears_loses_its_name_and_listener(mesh: Mesh) -> None:
    port = free_port()
    async with Upstream(keep_alive_echo) as up:
        await mesh.push(cluster(REVIEWS, port, up.port))
        address = mesh.dns.known[REVIEWS]
        await mesh.push()
        assert mesh.dns.lookup(REVIEWS) == ("", True)  # under the suffix: NXDOMAIN
        assert mesh.dns.lookup("reviews") == ("", False)  # a short name we do not know: REFUSED
        assert mesh.dns.listeners.specs == {}
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(address, port)
        assert mesh.router.hosts.aliases == {}


async def test_an_opaque_tcp_port_gets_a_relay(mesh: Mesh) -> None:
    port = free_port()
    async with Upstream(keep_alive_echo) as up:
        await mesh.push(cluster(DB, port, up.port, tcp=True))
        address = mesh.dns.known[DB]
        assert isinstance(mesh.dns.listeners.tcp[(address, port)], TcpListener)
        assert (address, port) not in mesh.dns.listeners.http
        # bytes relayed unchanged: the upstream sees the Host we wrote, not a rewritten request
        assert await get(address, port, "anything") == b"hello /hello"
        assert up.requests[0].line.startswith(b"GET /hello")


async def test_a_port_changing_protocol_gets_a_new_listener(mesh: Mesh) -> None:
    port = free_port()
    async with Upstream(keep_alive_echo) as up:
        await mesh.push(cluster(REVIEWS, port, up.port))
        address = mesh.dns.known[REVIEWS]
        assert (address, port) in mesh.dns.listeners.http
        await mesh.push(cluster(REVIEWS, port, up.port, tcp=True))
        assert mesh.dns.known[REVIEWS] == address  # same name, same address
        assert (address, port) in mesh.dns.listeners.tcp and (address, port) not in mesh.dns.listeners.http


async def test_a_port_that_cannot_be_bound_is_reported_and_bound_at_a_later_push(mesh: Mesh) -> None:
    port, other = free_port(), free_port()
    address = mesh.dns.addresses.home(REVIEWS)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((address, port))
    squatter.listen()
    async with Upstream(keep_alive_echo) as up:
        try:
            await mesh.push(ClusterConfig(host=REVIEWS, version=1, ports=[port, other], endpoints=[
                Endpoint(address="127.0.0.1", ports={port: up.port, other: up.port}, labels={})]))
            assert mesh.dns.known[REVIEWS] == address  # the other port serves: the name resolves
            assert (address, other) in mesh.dns.listeners.specs
            rows = {row["address"]: row for row in mesh.dns.dump()["listeners"]}
            assert rows[f"{address}:{port}"]["listening"] is False
            assert rows[f"{address}:{port}"]["error"] == "address already in use"
        finally:
            squatter.close()
        await mesh.push(ClusterConfig(host=REVIEWS, version=2, ports=[port, other], endpoints=[
            Endpoint(address="127.0.0.1", ports={port: up.port, other: up.port}, labels={})]))
        assert (address, port) in mesh.dns.listeners.specs and not mesh.dns.listeners.failed
        assert await get(address, port, f"reviews:{port}") == b"hello /hello"


async def test_stop_closes_the_dns_server_and_every_listener(pool) -> None:  # type: ignore[no-untyped-def]
    mesh = Mesh(pool)
    await mesh.outbound.start()
    await mesh.dns.start()
    port = free_port()
    await mesh.push(cluster(REVIEWS, port, 1))
    address = mesh.dns.known[REVIEWS]
    await mesh.dns.stop()
    await mesh.outbound.stop(grace=0.5)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(address, port)



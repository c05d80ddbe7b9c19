"""proxy/outbound/self_loop.py: a passthrough, CONNECT or mesh endpoint that is the sidecar's own outbound
listener is refused at once (508 LD), not looped until the PassthroughCluster breaker is full."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import Clients, Upstream, keep_alive_echo, read_response

from proxy.core.errors import LoopDetected
from proxy.main import Sidecar
from proxy.outbound.dns_cache import DnsCache
from proxy.outbound.passthrough import PASSTHROUGH_BREAKER
from proxy.outbound.self_loop import OwnListeners
from proxy.settings import ProxyOptions

pytestmark = pytest.mark.timeout(30)


def test_own_listener_ports_at_own_addresses_loop() -> None:
    own = OwnListeners(("10.1.2.3", "127.0.0.1"), (15001, 0, 7000))
    for address in ("127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1", "10.1.2.3"):
        assert own.loops(address, 15001), address
        assert own.loops(address, 7000), address
    assert not own.loops("127.0.0.1", 15006)  # the inbound port ends at the app: not a loop
    assert not own.loops("10.1.2.4", 15001)  # another host's outbound port
    assert not own.loops("127.0.0.1", 0)
    with pytest.raises(LoopDetected):
        own.check("127.0.0.1", 15001)


def test_dns_listeners_loop_at_their_exact_address_and_port_only() -> None:
    own = OwnListeners(("127.0.0.1",), (15001,), [("127.240.3.7", 9080)])
    assert own.loops("127.240.3.7", 9080) and own.loops("127.0.0.1", 15001)
    assert not own.loops("127.0.0.1", 9080)  # an app on 127.0.0.1:9080 is not the service's listener
    assert not own.loops("127.240.3.8", 9080) and not own.loops("127.240.3.7", 9081)


async def test_dns_cache_refuses_resolved_own_address_before_connecting() -> None:
    cache = DnsCache()
    cache.own = OwnListeners(("127.0.0.1",), (1,))  # port 1: nothing listens, so a connect would fail otherwise
    loop = asyncio.get_running_loop()
    for host in ("127.0.0.1", "localhost"):
        with pytest.raises(LoopDetected):
            await cache.connect(loop, asyncio.Protocol, host, 1)


@pytest.fixture
async def sidecar():
    options = ProxyOptions(service="loop", service_port=9080, app_port=1, inbound_host="127.0.0.1", inbound_port=0,
                           outbound_port=0, admin_port=0, access_log="")
    car = Sidecar(options)
    await car.start_listeners()
    clients = Clients()
    yield car, clients
    await clients.close()
    await car.outbound.stop(grace=0.5)
    await car.inbound.stop(grace=0.5)
    await car.admin.stop()
    car.pool.close()


async def test_passthrough_and_connect_to_own_outbound_port_refused_at_once(sidecar) -> None:  # type: ignore[no-untyped-def]
    car, clients = sidecar
    port = car.outbound.port
    before = PASSTHROUGH_BREAKER.active
    reader, writer = await clients(port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"0.0.0.0:{port}"):
        writer.write(b"GET http://%s/ HTTP/1.1\r\nhost: %s\r\n\r\n" % (host.encode(), host.encode()))
        response = await read_response(reader)
        assert response.status == 508, (host, response.line, response.body)
        assert b"loop" in response.body
    assert loop.time() - t0 < 3.0
    assert car.pool.opened == 0  # never connected to itself
    assert PASSTHROUGH_BREAKER.active == before
    reader, writer = await clients(port)
    writer.write(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    response = await read_response(reader)
    assert response.status == 508


async def test_outside_passthrough_still_works(sidecar) -> None:  # type: ignore[no-untyped-def]
    car, clients = sidecar
    async with Upstream(keep_alive_echo) as up:
        reader, writer = await clients(car.outbound.port)
        writer.write(b"GET http://127.0.0.1:%d/x HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n\r\n" % (up.port, up.port))
        response = await read_response(reader)
        assert response.status == 200, (response.line, response.body)
        assert up.accepted == 1


async def test_request_queued_by_breaker_without_route_timeout_waits_bounded(proxy_for, connect) -> None:  # type: ignore[no-untyped-def]
    """Passthrough has no route timeout: a request waiting in its breaker's queue gets 503 UO after the
    connect timeout (here 0.3 s) instead of waiting for a slot for as long as the first request lasts."""
    from tests.proxy.http_helpers import stall

    from proto.xds import PoolLimits
    from proxy.outbound.circuit_breaker import Breaker
    from proxy.outbound.passthrough import PASSTHROUGH_POLICY
    from proxy.core.target import Target

    breaker = Breaker("PassthroughCluster", PoolLimits(max_connections=1, max_pending=4, connect_timeout_ms=300))
    async with Upstream(stall) as up:
        class Router:
            def pick(self, head):  # type: ignore[no-untyped-def]
                return Target("127.0.0.1", up.port, "PassthroughCluster", policy=PASSTHROUGH_POLICY, breaker=breaker)

        first_reader, first = await proxy_for(Router())
        first.write(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        for _ in range(200):
            if breaker.active:
                break
            await asyncio.sleep(0.01)
        assert breaker.active == 1
        reader, writer = await proxy_for(Router())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        writer.write(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        response = await asyncio.wait_for(read_response(reader), 5.0)
        assert response.status == 503 and b"overflow" in response.body
        assert loop.time() - t0 < 3.0
        assert len(breaker.waiting) == 0 and breaker.active == 1  # the first one still holds its slot


async def test_a_tcp_route_to_the_sidecar_own_tcp_port_is_closed_not_looped() -> None:
    """A --tcp local listener whose mesh endpoint is that same local port would relay into itself."""
    from proxy.core.target import Target

    options = ProxyOptions(service="loop", service_port=9080, app_port=1, inbound_host="127.0.0.1", inbound_port=0,
                           outbound_port=0, admin_port=0, access_log="", tcp_routes=(("db", 5432, 0),))
    car = Sidecar(options)
    picked: list[Target] = []

    def tcp_pick(host: str, port: int, client: str = "") -> Target:
        picked.append(Target("127.0.0.1", car.tcp_out[0].port, "outbound|5432||db"))
        return picked[-1]

    car.router.tcp_pick = tcp_pick  # type: ignore[method-assign]
    car.tcp_out[0].pick = car._tcp_picker("db", 5432)
    await car.start_listeners()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", car.tcp_out[0].port)
        writer.write(b"hello")
        try:
            assert await asyncio.wait_for(reader.read(), 3.0) == b""  # closed at once
        except ConnectionResetError:
            pass  # or reset, as what the client sent was never read
        writer.close()
        assert len(picked) == 1  # not relayed back into itself
        assert len(car.tcp_out[0].relays) == 0
    finally:
        await car.outbound.stop(grace=0.5)
        await car.inbound.stop(grace=0.5)
        await car.tcp_out[0].stop()
        await car.admin.stop()
        car.pool.close()


async def test_an_endpoint_at_a_dns_listener_of_the_sidecar_is_refused_not_looped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A ServiceEntry whose endpoint is the loopback address the sidecar's DNS gave that very service (or any
    address:port its DNS listeners hold): 508 LD at once, not a request looping through the listener."""
    import socket

    from proto.xds import ClusterConfig, Endpoint, Push
    from proxy.dns.addresses import LoopbackAddresses

    from proxy.main import StartError

    for attempt in range(10):  # the DNS listener binds UDP and TCP: another test may hold the TCP twin of a free UDP port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            dns_port = probe.getsockname()[1]
        options = ProxyOptions(service="loop", service_port=9080, app_port=1, inbound_host="127.0.0.1",
                               inbound_port=0, outbound_port=0, admin_port=0, access_log="", dns_port=dns_port)
        car = Sidecar(options)
        try:
            await car.start_listeners()
            break
        except StartError as exc:
            if "address already in use" not in str(exc) or attempt == 9:
                raise
            await car._stop_listeners(0.1)
            car.pool.close()
    clients = Clients()
    try:
        host, port = "loopy.example", 18080
        address = LoopbackAddresses().home(host)
        car.state.apply(Push(epoch="e", seq=1, version=1, full=True, clusters=[ClusterConfig(
            host=host, version=1, ports=[port], endpoints=[Endpoint(address=address, ports={port: port})])]))
        for _ in range(300):
            await asyncio.sleep(0.01)
            if (address, port) in car.dns_listening:
                break
        assert car.pool.resolver.own.loops(address, port)  # type: ignore[union-attr]
        reader, writer = await clients(car.outbound.port)
        writer.write(b"GET http://%s:%d/ HTTP/1.1\r\nhost: %s:%d\r\n\r\n" % (host.encode(), port, host.encode(), port))
        response = await asyncio.wait_for(read_response(reader), 5.0)
        assert response.status == 508 and b"loop" in response.body
    finally:
        await clients.close()
        await car._stop_listeners(0.5)
        car.pool.close()

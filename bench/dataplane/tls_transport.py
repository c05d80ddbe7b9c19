"""The TLS transport's own cost, both ends in one process on the uvloop loop, the sidecar's TLS settings:
`python -m bench.dataplane.tls_transport [--round-trips N] [--handshakes N] [--rounds R]`.

For each transport proxy/tls/transport.py can choose (uvloop's SSL transport, aiofastnet) it measures, with
the mutual TLS contexts the sidecar builds (proxy/identity/tls.py: TLS 1.3, ECDSA P-256, client certificate
required, no session tickets):
- keep-alive: 16 connections, each carrying `--round-trips` request/response pairs of bench-sized messages;
  process CPU µs per round trip (both ends' TLS, the loop and the kernel's loopback work);
- handshakes: `--handshakes` connections opened, one request each, closed; CPU µs per connection (both ends);
- the same handshakes with OpenSSL's default of two TLS 1.3 session tickets, for the ticket lever.
Rounds alternate the transports (the machine is shared: compare within one run). Prints the medians and
aiofastnet's ratio to uvloop. Pin it for steadier figures: `taskset -c 1 python -m bench.dataplane.tls_transport`.

`--pair`: the sidecar pair instead, in one process over real sockets: a keep-alive client -> an outbound
HttpProxyProtocol (metrics and tracing on, as in a sidecar) -> its pooled upstream connection, mutual TLS
(auto mTLS, the chosen transport) or plaintext -> the inbound listener (proxy/tls/acceptor.py, STRICT or
DISABLE) and its HttpProxyProtocol -> an app answering nginx's response. CPU µs per request for the whole
pair (both sidecars, the client, the app, the kernel), mTLS and plaintext alternated: their difference is
what mutual TLS costs the pair per request. Deterministic enough for callgrind: `--pair --only mtls`.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import asyncio
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import uvloop

from bench.dataplane.micro import REQUEST, RESPONSE
from proxy.identity.tls import build_contexts
from proxy.tls import transport
from tests.proxy.identity.testca import TestCa  # the test suite's throwaway CA: SPIFFE leaves, P-256

SERVER_ID = "spiffe://cluster.local/ns/bench/sa/server"
CLIENT_ID = "spiffe://cluster.local/ns/bench/sa/client"
CONNECTIONS = 16


class _Server(asyncio.Protocol):
    def __init__(self, close: bool) -> None:
        self.close = close

    def connection_made(self, t: Any) -> None:
        self.t = t

    def data_received(self, data: bytes) -> None:
        self.t.write(RESPONSE)
        if self.close:
            self.t.close()


class _Client(asyncio.Protocol):
    def __init__(self, left: int, done: asyncio.Future[None]) -> None:
        self.left, self.done = left, done

    def connection_made(self, t: Any) -> None:
        self.t = t

    def data_received(self, data: bytes) -> None:
        self.left -= 1
        if self.left > 0:
            self.t.write(REQUEST)
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Checked(_Client):
    """A client of the pair: every answer must be nginx's 200 (a proxy's 503 would time nothing)."""

    def data_received(self, data: bytes) -> None:
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the pair answered {data[:200]!r}")
        super().data_received(data)


async def _serve(loop: asyncio.AbstractEventLoop, server_ctx: Any, close: bool) -> tuple[asyncio.Task[None], int]:
    """Accept by hand, as the sidecar's acceptor does, and hand each socket to the chosen transport."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.setblocking(False)

    async def accept_loop() -> None:
        try:
            while True:
                conn, _ = await loop.sock_accept(listener)
                loop.create_task(transport.accept_tls(loop, lambda: _Server(close), conn, server_ctx, 10.0))
        finally:
            listener.close()

    return loop.create_task(accept_loop()), listener.getsockname()[1]


async def _keep_alive(server_ctx: Any, client_ctx: Any, round_trips: int) -> float:
    loop = asyncio.get_running_loop()
    task, port = await _serve(loop, server_ctx, close=False)
    clients = []
    for _ in range(CONNECTIONS):
        done: asyncio.Future[None] = loop.create_future()
        _, client = await transport.open_tls(loop, lambda d=done: _Client(round_trips, d), "127.0.0.1", port,
                                             client_ctx, None, 10.0)
        clients.append(client)
    t0 = time.process_time()
    for client in clients:
        client.t.write(REQUEST)
    await asyncio.gather(*(c.done for c in clients))
    spent = time.process_time() - t0
    for client in clients:
        client.t.close()
    task.cancel()
    return spent / (round_trips * CONNECTIONS) * 1e6


async def _handshakes(server_ctx: Any, client_ctx: Any, count: int) -> float:
    loop = asyncio.get_running_loop()
    task, port = await _serve(loop, server_ctx, close=True)
    t0 = time.process_time()
    for _ in range(count):
        done: asyncio.Future[None] = loop.create_future()
        t, client = await transport.open_tls(loop, lambda d=done: _Client(1, d), "127.0.0.1", port, client_ctx,
                                             None, 10.0)
        t.write(REQUEST)
        await done
        t.close()
    spent = time.process_time() - t0
    task.cancel()
    return spent / count * 1e6


def _sidecar(mode: str, router: Any, pool: Any) -> Any:
    """A ServerState as proxy/main.py makes it for `mode`'s listener: Istio's metrics, tracing at the default."""
    from proxy.http.head import Mode
    from proxy.http.listener_state import ServerState
    from proxy.telemetry import peer_metadata
    from proxy.telemetry.http_metrics import InboundMetrics, OutboundMetrics
    from proxy.telemetry.labels import LocalWorkload
    from proxy.telemetry.tracing import SidecarTracing

    shared = ServerState(router, pool, Mode(mode), None, None, 60.0)
    me = LocalWorkload("bench-client" if mode == "outbound" else "bench-backend", "default", {"app": "bench"})
    if mode == "outbound":
        shared.metrics, shared.peer_line = OutboundMetrics(me), peer_metadata.header_line(me.peer_metadata())
    else:
        shared.metrics, shared.peers = InboundMetrics(me), peer_metadata.PeerMetadataCache()
    tracing = SidecarTracing(proxy_id="bench", service="bench", namespace="default", service_account="default",
                             labels={"app": "bench"}, address="127.0.0.1", service_port=9080,
                             domain_suffix="svc.cluster.local", trust_domain="cluster.local")
    shared.tracer = tracing.client if mode == "outbound" else tracing.server
    return shared


async def _pair(server_ctx: Any, client_ctx: Any, mtls: bool, round_trips: int) -> float:
    """CPU µs per request through the whole pair (module docstring, `--pair`)."""
    from proto.xds import ClusterConfig, Endpoint, HttpRule, RouteConfig, WeightedDestination
    from proxy.http.server import HttpProxyProtocol
    from proxy.http.upstream_pool import ConnectionPool
    from proxy.identity.tls import TlsContexts, TlsProvider
    from proxy.inbound.local_app import LocalAppRouter
    from proxy.outbound.route import CompiledRoute
    from proxy.outbound.router import MeshRouter
    from proxy.outbound.table import build_table
    from proxy.tls.acceptor import DISABLE, STRICT, TlsAcceptor
    from proxy.tls.listen import listening_socket
    from proxy.tls.upstream import UpstreamTls

    loop = asyncio.get_running_loop()
    app = await loop.create_server(lambda: _Server(False), "127.0.0.1", 0)
    app_port = app.sockets[0].getsockname()[1]
    slow = 120.0  # connect and handshake timeouts: under callgrind, 16 handshakes at once take a while
    inbound = _sidecar("inbound", LocalAppRouter("127.0.0.1", app_port, "bench-backend"),
                       ConnectionPool(connect_timeout=slow))
    sock = listening_socket("127.0.0.1", 0)
    acceptor = TlsAcceptor(sock, lambda: HttpProxyProtocol(inbound), lambda: STRICT if mtls else DISABLE,
                           lambda: server_ctx, handshake_timeout=slow)
    acceptor.start()
    provider = TlsProvider()
    provider.current = TlsContexts(server_ctx, client_ctx, CLIENT_ID, "1", 0)
    fqdn = "bench-backend.default.svc.cluster.local"
    endpoint = Endpoint(address="127.0.0.1", ports={9080: sock.getsockname()[1]}, sidecar=True, identity=SERVER_ID,
                        auto_mtls=[9080] if mtls else [])
    cluster = ClusterConfig(host=fqdn, version=1, ports=[9080], lb="LEAST_REQUEST", endpoints=[endpoint])
    route = RouteConfig(host=fqdn, version=1, source="default/bench-backend",
                        rules=[HttpRule(destinations=[WeightedDestination(host=fqdn)])])
    table = build_table({fqdn: cluster}, {fqdn: CompiledRoute(route)}, originate=UpstreamTls(provider).originate)
    outbound = _sidecar("outbound", MeshRouter(SimpleNamespace(table=table), "default"),
                        ConnectionPool(connect_timeout=slow))
    listener = await loop.create_server(lambda: HttpProxyProtocol(outbound), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    clients = []
    for _ in range(CONNECTIONS):  # one request each first, all at once: the pools open their connections
        done: asyncio.Future[None] = loop.create_future()
        _, client = await loop.create_connection(lambda d=done: _Checked(1, d), "127.0.0.1", port)
        client.t.write(REQUEST)
        clients.append(client)
    await asyncio.gather(*(c.done for c in clients))
    for client in clients:
        client.left, client.done = round_trips, loop.create_future()
    t0 = time.process_time()
    for client in clients:
        client.t.write(REQUEST)
    await asyncio.gather(*(c.done for c in clients))
    spent = time.process_time() - t0
    if (acceptor.stats.tls > 0) != mtls or any(c.left for c in clients):
        raise RuntimeError(f"the pair did not carry what it should: {acceptor.stats.as_dict()}")
    for client in clients:
        client.t.close()
    listener.close()
    acceptor.close()
    app.close()
    return spent / (round_trips * CONNECTIONS) * 1e6


def _run(body: Callable[[], Any]) -> float:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(body())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=3000, help="per keep-alive connection (16 of them)")
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pair", action="store_true", help="the sidecar pair in one process (module docstring)")
    parser.add_argument("--only", choices=["mtls", "plaintext"], help="with --pair: that hop alone (for callgrind)")
    args = parser.parse_args(argv)
    with contextlib.nullcontext():
        ca = TestCa("isthmus bench root")
        server = build_contexts(ca.material(SERVER_ID), [ca.pem]).server
        client = build_contexts(ca.material(CLIENT_ID), [ca.pem]).client
        ticketing = build_contexts(ca.material(SERVER_ID), [ca.pem]).server
        ticketing.num_tickets = 2  # OpenSSL's default, for the ticket lever
        if args.pair:
            kinds = [args.only] if args.only else ["mtls", "plaintext"]
            runs: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for kind in kinds:
                    runs.setdefault(kind, []).append(
                        _run(lambda: _pair(server, client, kind == "mtls", args.round_trips)))
            print(f"the sidecar pair in one process, CPU µs per request (median of {args.rounds}; "
                  f"{transport.current()}): " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in runs.items()))
            if len(runs) == 2:
                print(f"mutual TLS adds {statistics.median(runs['mtls']) - statistics.median(runs['plaintext']):.1f}"
                      " µs per request to the pair")
            return
        figures: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name in transport.TRANSPORTS:
                transport.configure(name)
                for what, body in (
                        ("keep-alive µs/round trip", lambda: _keep_alive(server, client, args.round_trips)),
                        ("handshake µs, no tickets", lambda: _handshakes(server, client, args.handshakes)),
                        ("handshake µs, 2 tickets", lambda: _handshakes(ticketing, client, args.handshakes))):
                    figures.setdefault((what, name), []).append(_run(body))
    transport.configure(transport.DEFAULT)
    print(f"{'CPU, both ends (median of ' + str(args.rounds) + ')':<34}{'uvloop':>10}{'aiofastnet':>12}{'ratio':>8}")
    for what in ("keep-alive µs/round trip", "handshake µs, no tickets", "handshake µs, 2 tickets"):
        uv = statistics.median(figures[(what, "uvloop")])
        afn = statistics.median(figures[(what, "aiofastnet")])
        print(f"{what:<34}{uv:>10.1f}{afn:>12.1f}{afn / uv:>8.2f}")


if __name__ == "__main__":
    main()

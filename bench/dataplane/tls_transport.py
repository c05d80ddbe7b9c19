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
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import asyncio
import statistics
import time
from collections.abc import Callable
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


def _run(body: Callable[[], Any]) -> float:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(body())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=3000, help="per keep-alive connection (16 of them)")
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with contextlib.nullcontext():
        ca = TestCa("isthmus bench root")
        server = build_contexts(ca.material(SERVER_ID), [ca.pem]).server
        client = build_contexts(ca.material(CLIENT_ID), [ca.pem]).client
        ticketing = build_contexts(ca.material(SERVER_ID), [ca.pem]).server
        ticketing.num_tickets = 2  # OpenSSL's default, for the ticket lever
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

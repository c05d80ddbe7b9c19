"""Opaque TCP through real sidecars (proxy/tcp/relay.py): a VirtualService tcp route splits connections
by weight between two versions of a TCP service, bytes pass both ways unchanged (half-close included),
and DestinationRule tcp.maxConnections and idleTimeout apply to the connections."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os

import pytest

from isthmus.launch import free_port
from tests.integration.conftest import ControlPlane, Sidecar, apply, eventually
from tests.integration.httpclient import AppServer

pytestmark = pytest.mark.asyncio

_namespaces = itertools.count(1)


class EchoServer(AppServer):
    """A TCP app: greets each connection with its name, then echoes until the client half-closes."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.connections = 0

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        self.connections += 1
        writer.write(self.name.encode() + b"\n")
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write(b"bye\n")  # after the client's EOF: the reply must still reach it
        await writer.drain()
        return False


class Database:
    """db v1 and v2 (each an EchoServer behind a sidecar serving it as db:5432) and a client sidecar
    with `--tcp db:5432=<local port>`."""

    def __init__(self, mesh: ControlPlane) -> None:
        self.mesh = mesh
        self.ns = f"tcp{next(_namespaces)}"
        self.servers: dict[str, EchoServer] = {}
        self.local_port = free_port()

    async def start(self) -> "Database":
        sidecars: list[Sidecar] = []
        for version in ("v1", "v2"):
            server = self.servers[version] = await EchoServer(version).start()
            sidecars.append(self.mesh.proxy("db", server.port, 9080, self.ns, f"app=db,version={version}",
                                            ("--app-tcp", f"5432={server.port}")))
        self.access_log = self.mesh.state_dir / "logs" / f"access-{self.ns}.log"
        self.client = self.mesh.proxy("api", server.port, 9080, self.ns, "app=api",
                                      ("--tcp", f"db:5432={self.local_port}", "--access-log", str(self.access_log)))
        self.sidecars = sidecars
        for sidecar in [*sidecars, self.client]:
            await sidecar.ready()
        await eventually(lambda: self.endpoints() == 2)
        return self

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def endpoints(self) -> int:
        for cluster in self.client.config_dump()["clusters"]:
            if cluster["host"] == f"db.{self.ns}.svc.cluster.local":
                return sum(1 for e in cluster["endpoints"] if 5432 in map(int, e["ports"]))
        return 0

    async def rule(self, traffic_policy: str = "") -> None:
        """The db DestinationRule: subsets v1 and v2, and the given trafficPolicy."""
        policy = f"  trafficPolicy: {traffic_policy}\n" if traffic_policy else ""
        await self.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: {self.ns}}}
spec:
  host: db
{policy}  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")

    async def apply(self, text: str) -> None:
        reply = await apply(self.mesh, text)
        assert reply["ok"], reply
        await eventually(lambda: self.client.config_dump()["version"] >= reply["revision"])

    async def session(self, payload: bytes = b"ping") -> tuple[str, bytes]:
        """One connection: (greeting, everything echoed after the client's half-close)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.local_port)
        try:
            greeting = (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(), 10)
            return greeting, rest
        finally:
            writer.close()


@pytest.fixture
async def db(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    database = await Database(mesh).start()
    await database.rule()
    yield database
    for server in database.servers.values():
        await server.stop()


async def test_a_tcp_route_splits_connections_50_50_over_200_connections(db: Database) -> None:
    await db.apply(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: {db.ns}}}
spec:
  hosts: [db]
  tcp:
  - match: [{{port: 5432}}]
    route:
    - {{destination: {{host: db, subset: v1}}, weight: 50}}
    - {{destination: {{host: db, subset: v2}}, weight: 50}}
""")
    seen: collections.Counter[str] = collections.Counter()
    for i in range(200):
        greeting, rest = await db.session(b"row %d" % i)
        assert rest == b"row %d" % i + b"bye\n"  # echoed whole, and the reply after our EOF arrived
        seen[greeting] += 1
    assert set(seen) == {"v1", "v2"}
    assert 70 <= seen["v1"] <= 130, seen  # 50/50 of 200: more than 4 standard deviations of slack
    # the client sidecar's access log has a line per connection, with the subset it went to
    lines = await eventually(lambda: [line for line in db.access_lines() if '"db:5432"' in line]
                             if len(db.access_lines()) >= 200 else None)
    v1 = sum(f"outbound|5432|v1|db.{db.ns}.svc.cluster.local" in line for line in lines)
    assert len(lines) == 200 and v1 == seen["v1"], lines[:3]
    assert all('"- - -" 0 - - - ' in line for line in lines)  # no status, no flag, no details: relayed


async def test_bytes_pass_unchanged_both_ways_and_a_shift_takes_new_connections(db: Database) -> None:
    payload = os.urandom(2_000_000)  # bigger than any socket buffer: flow control on both legs
    greeting, rest = await db.session(payload)
    assert rest == payload + b"bye\n"
    await db.apply(f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: {db.ns}}}
spec:
  hosts: [db]
  tcp:
  - route: [{{destination: {{host: db, subset: v2}}}}]
""")
    assert {(await db.session())[0] for _ in range(20)} == {"v2"}


async def test_max_connections_closes_an_overflowing_connection_and_idle_ones_are_closed(db: Database) -> None:
    await db.rule("{connectionPool: {tcp: {maxConnections: 1, idleTimeout: 1s}}}")
    reader, writer = await asyncio.open_connection("127.0.0.1", db.local_port)
    assert (await asyncio.wait_for(reader.readline(), 5)).strip() in (b"v1", b"v2")
    loop = asyncio.get_running_loop()
    started = loop.time()  # the last byte on this connection
    # the cluster is full: a second connection is accepted by the sidecar, then closed with nothing relayed
    other_reader, other_writer = await asyncio.open_connection("127.0.0.1", db.local_port)
    assert await asyncio.wait_for(other_reader.read(), 5) == b""
    other_writer.close()
    await eventually(lambda: any('"- - -" 0 UO - - 0 0 ' in line and '"db:5432"' in line for line in db.access_lines()))
    # the first one, left idle, is closed after idleTimeout: the client reads EOF
    assert await asyncio.wait_for(reader.read(), 10) == b""
    assert 0.9 <= loop.time() - started <= 5.0
    writer.close()
    # its slot is free again
    await eventually(lambda: db.session(), timeout=5)


async def test_max_connection_duration_closes_a_busy_connection(db: Database) -> None:
    await db.rule("{connectionPool: {tcp: {maxConnectionDuration: 800ms}}}")
    reader, writer = await asyncio.open_connection("127.0.0.1", db.local_port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(reader.readline(), 5)
    try:
        while True:  # keep it busy: only the duration can end it
            writer.write(b"x" * 100)
            await writer.drain()
            if not await asyncio.wait_for(reader.read(100), 5):
                break
            await asyncio.sleep(0.05)
    except ConnectionError:
        pass  # a reset ends it as well as an EOF
    assert 0.6 <= loop.time() - started <= 4.0
    writer.close()


async def test_tcp_between_sidecars_is_mutual_tls_and_still_passes_half_closes(db: Database) -> None:
    """Auto mTLS for opaque TCP as for HTTP; the echo server answers after the client's EOF, which crossed the
    mTLS leg as a close_notify (proxy/tls/bio.py)."""
    for i in range(4):
        greeting, rest = await db.session(b"secret %d" % i)
        assert rest == b"secret %d" % i + b"bye\n"
    stats = [json.loads(s.admin("/server_info")[1])["inbound_mtls"]["listeners"]["tcp 5432"] for s in db.sidecars]
    assert sum(s["tls"] for s in stats) == 4 and sum(s["plaintext"] for s in stats) == 0, stats


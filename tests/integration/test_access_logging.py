"""Istio's "Envoy Access Logs" task (istio.io/latest/docs/tasks/observability/logs/access-log/) with its Telemetry
YAML unchanged, on real sidecars, the real bus and etcd: sleep calls httpbin (namespace foo, mutual TLS from the
ca); neither sidecar has --access-log, so nothing is logged until the Telemetry turns on the `envoy` provider,
whose lines go to each sidecar's stdout (as Envoy's to the container's). Then a filter `response.code >= 400`
(the Telemetry API's filter example) leaves only the failed request's lines, and the `isthmus` provider ships the
entries on the bus (AccessLogBatch on isthmus.telemetry.logs.<namespace>.<service account>), where the telemetry
service's credentials receive them."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
import pytest_asyncio

from proto.observations import AccessLogBatch
from tests.integration.conftest import ControlPlane, Sidecar, apply_ok, delete, eventually, fqdn
from tests.integration.httpclient import AppServer, Client

pytestmark = pytest.mark.asyncio(loop_scope="module")
NS = "foo"

# the "Envoy Access Logs" task, "Using Telemetry API", as istio.io shows it
MESH_LOGGING = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-logging-default
  namespace: istio-system
spec:
  accessLogging:
  - providers:
    - name: envoy
"""
# the same with the Telemetry API task's filter (there with its `otel` provider, here the built-in envoy)
MESH_ERRORS_ONLY = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-logging-default
  namespace: istio-system
spec:
  accessLogging:
  - providers:
    - name: envoy
    filter:
      expression: response.code >= 400
"""
FOO_TO_TELEMETRY_SERVICE = """
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: ship-logs
  namespace: foo
spec:
  accessLogging:
  - providers:
    - name: isthmus
"""


class Httpbin(AppServer):
    """httpbin's /status/<code>: answers with that status."""

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        code = int(path.split("?")[0].rsplit("/", 1)[1]) if path.startswith("/status/") else 200
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % code)
        await writer.drain()
        return True


class World:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.httpbin_app = Httpbin()
        self.sleep_app = Httpbin()
        self.httpbin: Sidecar | None = None
        self.sleep: Sidecar | None = None

    async def start(self) -> "World":
        await self.httpbin_app.start()
        await self.sleep_app.start()
        env = {"ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL": "0.2"}
        self.httpbin = self.plane.proxy("httpbin", self.httpbin_app.port, 8000, NS, "app=httpbin",
                                        ("--service-account", "httpbin"), env=env)
        self.sleep = self.plane.proxy("sleep", self.sleep_app.port, 80, NS, "app=sleep",
                                      ("--service-account", "sleep"), env=env)
        await asyncio.gather(self.httpbin.ready(60), self.sleep.ready(60))
        await eventually(lambda: self.sleep.endpoints(fqdn("httpbin", NS)) >= 1, 30)
        return self

    async def curl(self, path: str) -> int:
        """`kubectl exec sleep -- curl httpbin:8000<path>`: through sleep's sidecar."""
        client = Client("127.0.0.1", self.sleep.outbound_port)
        try:
            return (await client.request("GET", f"http://httpbin.{NS}:8000{path}")).status
        finally:
            await client.close()

    @staticmethod
    def access_lines(sidecar: Sidecar) -> list[str]:
        """What the sidecar's stdout holds of access-log lines (its own logs are JSON objects)."""
        text = sidecar.process.log_path.read_text(errors="replace") if sidecar.process.log_path.exists() else ""
        return [line for line in text.splitlines() if line.startswith("[")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(plane: ControlPlane):  # type: ignore[no-untyped-def]
    w = await World(plane).start()
    yield w
    await w.httpbin_app.stop()
    await w.sleep_app.stop()


async def test_the_envoy_provider_logs_both_sides_to_stdout_then_a_filter_keeps_the_errors(world: World):
    quiet = f"/status/200?before={uuid.uuid4().hex}"
    assert await world.curl(quiet) == 200
    await asyncio.sleep(1.0)  # two flush intervals: nothing was logged, no Telemetry and no --access-log
    assert not [line for s in (world.sleep, world.httpbin) for line in world.access_lines(s) if quiet in line]

    await apply_ok(world.plane, MESH_LOGGING, world.sleep, world.httpbin)
    ok, teapot = f"/status/200?id={uuid.uuid4().hex}", f"/status/418?id={uuid.uuid4().hex}"
    assert await world.curl(ok) == 200 and await world.curl(teapot) == 418
    server = await eventually(lambda: [ln for ln in world.access_lines(world.httpbin) if teapot in ln or ok in ln]
                              if len([ln for ln in world.access_lines(world.httpbin) if teapot in ln or ok in ln]) == 2
                              else None)
    client = await eventually(lambda: [ln for ln in world.access_lines(world.sleep) if teapot in ln or ok in ln]
                              if len([ln for ln in world.access_lines(world.sleep) if teapot in ln or ok in ln]) == 2
                              else None)
    # httpbin's inbound lines: the caller proved sleep's identity over mutual TLS
    assert all(' inbound "GET /status/' in ln and ln.endswith(" spiffe://cluster.local/ns/foo/sa/sleep -")
               for ln in server), server
    assert any(f'"GET {teapot} HTTP/1.1" 418 - via_upstream - 0 2 ' in ln for ln in server), server
    # sleep's outbound lines: the upstream host, cluster and the identity httpbin's sidecar proved
    assert all(' outbound "GET /status/' in ln and f'"httpbin.{NS}:8000"' in ln
               and f" outbound|8000||httpbin.{NS}.svc.cluster.local " in ln
               and ln.endswith(" spiffe://cluster.local/ns/foo/sa/httpbin") for ln in client), client

    await apply_ok(world.plane, MESH_ERRORS_ONLY, world.sleep, world.httpbin)
    ok, teapot = f"/status/200?id={uuid.uuid4().hex}", f"/status/418?id={uuid.uuid4().hex}"
    assert await world.curl(ok) == 200 and await world.curl(teapot) == 418
    await eventually(lambda: any(teapot in ln for ln in world.access_lines(world.httpbin))
                     and any(teapot in ln for ln in world.access_lines(world.sleep)))
    await asyncio.sleep(0.5)  # the 200 was answered first: had it been logged, it would be there by now
    assert not [ln for s in (world.sleep, world.httpbin) for ln in world.access_lines(s) if ok in ln]


async def test_the_isthmus_provider_ships_entries_to_the_telemetry_service_on_the_bus(world: World):
    received: list[tuple[str, AccessLogBatch]] = []
    bus = await world.plane.bus("test-telemetry", role="telemetry")

    async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
        received.append((msg.subject, msgspec.json.decode(msg.data, type=AccessLogBatch)))

    sub = await bus.client.subscribe("isthmus.telemetry.logs.>", cb=on_msg)
    try:
        reply = await apply_ok(world.plane, FOO_TO_TELEMETRY_SERVICE, world.sleep, world.httpbin)
        path = f"/status/503?id={uuid.uuid4().hex}"
        assert await world.curl(path) == 503

        def shipped() -> dict[str, tuple[str, object]] | None:
            found = {e.listener: (subject, e) for subject, batch in received for e in batch.entries if e.path == path}
            return found if len(found) == 2 else None
        found = await eventually(shipped, 15)
        (in_subject, inbound), (out_subject, outbound) = found["inbound"], found["outbound"]
        assert in_subject == "isthmus.telemetry.logs.foo.httpbin" and out_subject == "isthmus.telemetry.logs.foo.sleep"
        assert (inbound.response_code, inbound.protocol, inbound.downstream_peer_principal) == (
            503, "HTTP/1.1", "spiffe://cluster.local/ns/foo/sa/sleep")
        assert (outbound.response_code, outbound.authority, outbound.upstream_peer_principal) == (
            503, f"httpbin.{NS}:8000", "spiffe://cluster.local/ns/foo/sa/httpbin")
        assert outbound.upstream_cluster == f"outbound|8000||httpbin.{NS}.svc.cluster.local"
        assert outbound.request_id and outbound.request_id == inbound.request_id  # one x-request-id across both
        # the namespace's Telemetry names only `isthmus`: the mesh's `envoy` is out of scope for foo's workloads
        await asyncio.sleep(0.5)
        assert not [ln for s in (world.sleep, world.httpbin) for ln in world.access_lines(s) if path in ln]
        assert reply["ok"]
    finally:
        await sub.unsubscribe()
        await bus.close()
        for name, ns in (("ship-logs", NS), ("mesh-logging-default", "istio-system")):
            await delete(world.plane, "Telemetry", name, ns)

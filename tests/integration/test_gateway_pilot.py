"""Pilot compiles a registered gateway workload's GatewayListeners over the real bus and etcd: a gateway registers
as `isthmus gateway run` does (Workload.gateway, gateway_ports), Istio's "Ingress gateways" task YAML is applied
through the config API, and the compiled listeners arrive in a push and in the snapshot; a change to the
VirtualService arrives as a delta holding that gateway's entry only."""

from __future__ import annotations

import asyncio
import json

import pytest

from proto import subjects
from proto.gateway_xds import GatewayListeners
from proto.xds import Push, SnapshotRequest
from runtime.bus import decode, encode
from tests.integration.conftest import ControlPlane, apply, eventually

pytestmark = pytest.mark.asyncio

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: gwit}
spec:
  selector: {istio: ingressgateway-it}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["httpbin.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: gwit}
spec:
  hosts: ["httpbin.example.com"]
  gateways: [httpbin-gateway]
  http:
  - match:
    - uri: {prefix: /status}
    - uri: {prefix: %s}
    route:
    - destination:
        port: {number: 8000}
        host: httpbin
"""


def prefixes(g: GatewayListeners) -> list[str]:
    [port] = [p for p in g.ports if p.port == 80]
    [vh] = port.virtual_hosts
    assert vh.domains == ["httpbin.example.com"]
    return [m.uri.prefix for r in vh.route.rules for m in r.matches if m.uri is not None]


async def test_a_registered_gateway_gets_its_listeners_in_pushes_and_snapshots(mesh: ControlPlane) -> None:
    bus = await mesh.bus("test-gw-proxy", "proxy:istio-system")  # what a gateway proxy may do
    pushes: asyncio.Queue[Push] = asyncio.Queue()

    async def on_push(data: bytes) -> None:
        push = decode(data, Push)
        if push.gateways or push.removed_gateways:
            await pushes.put(push)

    await bus.listen(subjects.XDS_PUSH, on_push)
    await bus.flush()
    workload = {"id": "ingress-it-1", "service": "istio-ingressgateway", "namespace": "istio-system",
                "address": "127.0.0.1", "labels": {"istio": "ingressgateway-it"}, "gateway": True,
                "gateway_ports": {"80": 18080}}
    reply = json.loads(await bus.request("isthmus.registry.register.istio-system.default",
                                         json.dumps({"workload": workload, "ttl": 30}).encode(), timeout=5))
    assert reply["ok"], reply
    applied = await apply(mesh, GATEWAY % "/delay")
    assert applied["ok"], applied

    async def listeners_with(wanted: list[str]) -> GatewayListeners:
        while True:
            push = await asyncio.wait_for(pushes.get(), 15)
            mine = [g for g in push.gateways if g.workload == "ingress-it-1"]
            if mine and mine[0].ports and prefixes(mine[0]) == wanted:
                assert [g.workload for g in push.gateways] == ["ingress-it-1"]  # a delta: only what changed
                return mine[0]

    first = await listeners_with(["/status", "/delay"])
    assert first.namespace == "istio-system" and first.gateways == ["gwit/httpbin-gateway"]
    route = first.ports[0].virtual_hosts[0].route
    assert route.rules[0].destinations[0].host == "httpbin.gwit.svc.cluster.local"
    assert route.rules[0].destinations[0].port == 8000

    async def snapshot() -> GatewayListeners | None:
        full = decode(await bus.request(subjects.XDS_SNAPSHOT, encode(SnapshotRequest(proxy_id="ingress-it-1")),
                                        timeout=5), Push)
        found = [g for g in full.gateways if g.workload == "ingress-it-1"]
        return found[0] if found and found[0].ports and found[0].version >= first.version else None

    held = await eventually(snapshot)
    assert prefixes(held) == ["/status", "/delay"]

    changed = await apply(mesh, GATEWAY % "/headers")
    assert changed["ok"], changed
    second = await listeners_with(["/status", "/headers"])
    assert second.version > first.version
    await bus.close()

"""A proxy keeps serving with its last config when pilot or the bus goes away, and resyncs when
they come back. This module has a control plane of its own, since it stops the bus."""

from __future__ import annotations

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: stable}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: stable}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


async def test_proxy_serves_through_control_plane_outages_and_resyncs_after(mesh: ControlPlane) -> None:
    v1, v2 = await Backend("v1").start(), await Backend("v2").start()
    for backend, version in ((v1, "v1"), (v2, "v2")):
        await mesh.proxy("reviews", backend.port, 9080, "stable", f"version={version}").ready()
    front = await mesh.proxy("frontend", v1.port, 9080, "stable").ready()
    reply = await apply(mesh, VS.format(subset="v1"))
    await eventually(lambda: front.config_dump()["version"] >= reply["revision"])
    client = Client("127.0.0.1", front.outbound_port)

    async def versions(n: int = 20) -> set[str]:
        return {(await client.request("GET", "http://reviews:9080/")).text for _ in range(n)}

    assert await versions() == {"v1"}

    mesh.services["pilot"].stop()
    assert await versions() == {"v1"}  # pilot gone: last config still serves

    mesh.nats.stop()
    assert await versions() == {"v1"}  # bus gone too
    mesh.nats.start()
    mesh.nats.wait_ready(15)
    await mesh.start_service_async("pilot")

    reply = await apply(mesh, VS.format(subset="v2"))
    assert reply["ok"]
    await eventually(lambda: front.config_dump()["version"] >= reply["revision"], timeout=15)

    async def only_v2() -> bool:  # leases lapsed during the outage: workloads register again first
        return await versions() == {"v2"}

    await eventually(only_v2, timeout=15)
    await client.close()

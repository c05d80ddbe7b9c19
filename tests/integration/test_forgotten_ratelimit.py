"""A sidecar whose workload pilot forgets keeps its RateLimits, as it keeps its security entry (3a42c45).

Pilot forgets a running workload when its key goes (its lease lapsed while the registry was away): the
RateLimits, which ride on its service's cluster for the registered workloads they select, then select nothing
of it, and the sidecar served without them (and with fresh buckets once back). Own module, so its own control
plane: it stops the registry.
"""

from __future__ import annotations

import pytest

from runtime.store import REGISTRY_PREFIX
from services.registry.service import workload_key
from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio
NS = "rlforget"
LIMIT = f"""apiVersion: isthmus.io/v1alpha1
kind: RateLimit
metadata: {{name: fin, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: fin}}}}
  tokenBucket: {{maxTokens: 1, tokensPerFill: 1, fillInterval: 3600s}}
"""


async def _status(port: int) -> int:
    client = Client("127.0.0.1", port)
    try:
        return (await client.request("GET", "/", {"host": f"fin.{NS}.svc.cluster.local"})).status
    finally:
        await client.close()


async def test_a_forgotten_workload_keeps_its_rate_limits_and_their_buckets(mesh: ControlPlane) -> None:
    reply = await apply(mesh, LIMIT)
    assert reply["ok"], reply
    app = await Backend("fin").start()
    fin = await mesh.proxy("fin", app.port, 9080, NS, "app=fin").ready()
    await fin.holds(reply["revision"])
    assert [await _status(fin.inbound_port) for _ in range(2)] == [200, 429]
    workload_id = fin.config_dump()["proxy"]["id"]
    mesh.services["registry"].stop()
    store = await mesh.store()
    try:
        assert await store.delete(workload_key(NS, "fin", workload_id))
        revision = (await store.list(REGISTRY_PREFIX))[1]
        await fin.holds(revision)
        assert await _status(fin.inbound_port) == 429  # the same bucket, still empty
    finally:
        await store.close()
        await mesh.start_service_async("registry")
    await fin.ready()
    # registered again: pilot compiles the limit for it again, an unchanged rule keeps its bucket
    await eventually(lambda: fin.config_dump()["security"]["version"] > revision, timeout=20)
    assert await _status(fin.inbound_port) == 429
    await app.stop()

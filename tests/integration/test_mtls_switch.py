"""A workload switched from PeerAuthentication DISABLE straight to STRICT loses no request from a sidecar
client (Istio loses some: istio/istio#48290): the server holds the switch at PERMISSIVE while its clients move
to mutual TLS (proxy/tls/modes.py), then refuses plaintext. Real sidecars, nats, etcd, ca, pilot, registry."""

from __future__ import annotations

import asyncio
import collections
import json
import time

import pytest

from tests.integration.conftest import ControlPlane, apply_ok, eventually, fqdn
from tests.integration.httpclient import Backend, Client
from tests.integration.test_mtls_migration import plaintext_refused

pytestmark = pytest.mark.asyncio

NS = "sw"
HOLD = 2.0  # the server sidecar's --mtls-switch-hold


def workload_policy(mode: str) -> str:
    return f"""
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {{name: fin, namespace: {NS}}}
spec:
  selector:
    matchLabels: {{app: fin}}
  mtls: {{mode: {mode}}}
"""


# every request on a new upstream connection, so each one meets the server's mode of the moment
ONE_REQUEST_PER_CONNECTION = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: fin, namespace: {NS}}}
spec:
  host: fin.{NS}.svc.cluster.local
  trafficPolicy:
    connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}
"""


def inbound(sidecar) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return json.loads(sidecar.admin("/server_info")[1])["inbound_mtls"]


async def test_disable_straight_to_strict_loses_no_request_from_a_sidecar_client(mesh: ControlPlane) -> None:
    fin_app, cli_app = await Backend("fin").start(), await Backend("cli").start()
    await apply_ok(mesh, workload_policy("DISABLE") + "---\n" + ONE_REQUEST_PER_CONNECTION)
    fin = mesh.proxy("fin", fin_app.port, 8000, NS, "app=fin", extra=("--mtls-switch-hold", str(HOLD)))
    cli = mesh.proxy("cli", cli_app.port, 80, NS, "app=cli")
    await fin.ready()
    await cli.ready()
    await eventually(lambda: cli.endpoints(fqdn("fin", NS)) == 1)
    await eventually(lambda: inbound(fin)["modes"] == {str(fin_app.port): "DISABLE"} and not inbound(fin)["held_s"])
    statuses: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()

    async def load() -> None:  # bounded: 3,000 requests or 30 s
        client = Client("127.0.0.1", cli.outbound_port)
        deadline = time.monotonic() + 30.0
        for _ in range(3000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                response = await client.request("GET", f"http://fin.{NS}:8000/")
                statuses[str(response.status)] += 1
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1
                await client.close()
        await client.close()

    loaders = [asyncio.create_task(load()) for _ in range(2)]
    try:
        await eventually(lambda: sum(statuses.values()) >= 20, 10.0)
        before = inbound(fin)["listeners"]["inbound"]
        assert before["plaintext"] >= 20 and before["tls"] == 0  # DISABLE: auto mTLS sends plaintext
        await apply_ok(mesh, workload_policy("STRICT"), fin, cli)
        assert inbound(fin)["modes"] == {str(fin_app.port): "STRICT"}
        # held at PERMISSIVE for HOLD seconds, then STRICT; the load runs through both
        await eventually(lambda: not inbound(fin)["held_s"], HOLD + 10.0)
        served = sum(statuses.values())
        await eventually(lambda: sum(statuses.values()) >= served + 20, 10.0)
    finally:
        stop.set()
        await asyncio.gather(*loaders)
    assert set(statuses) == {"200"}, statuses
    after = inbound(fin)["listeners"]["inbound"]
    assert after["tls"] >= 20 and after["plaintext_refused"] == 0
    assert await plaintext_refused(fin.inbound_port)  # STRICT now holds for a plaintext client
    await fin_app.stop()
    await cli_app.stop()

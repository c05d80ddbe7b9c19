"""A push a sidecar refuses for one of its clusters must not cost it the policies the same push carried.

A DestinationRule whose tls names a file this VM lacks (caCertificates of SIMPLE) makes the sidecar NACK
every push carrying that cluster; a push is all or nothing, so an AuthorizationPolicy applied with it was
dropped with it, and pilot sends an entry again only when it changes: once the DestinationRule was fixed the
sidecar ACKed the newest version (proxy-status SYNCED) and served /admin past the DENY policy for good.
Own module, so its own control plane.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import ControlPlane, apply, delete, eventually
from tests.integration.httpclient import Backend
from tests.integration.inbound_policy import deny_admin, inbound_get

pytestmark = pytest.mark.asyncio

NS = "nacked"
DENY_ADMIN = deny_admin(NS)
MISSING_CA = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: fin-tls, namespace: {NS}}}
spec:
  host: fin.{NS}.svc.cluster.local
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: /nonexistent/isthmus-test/ca.pem}}}}
"""


async def _status(port: int, path: str) -> int:
    return (await inbound_get(port, path, f"fin.{NS}.svc.cluster.local")).status


async def test_a_push_refused_for_a_cluster_still_brings_the_policy_it_carries(mesh: ControlPlane) -> None:
    app = await Backend("fin").start()
    try:
        fin = await mesh.proxy("fin", app.port, 9080, NS, "app=fin").ready()
        assert await _status(fin.inbound_port, "/admin") == 200
        # one submission, one push: the policy and a cluster this sidecar refuses
        reply = await apply(mesh, DENY_ADMIN + "---\n" + MISSING_CA)
        assert reply["ok"], reply
        await eventually(lambda: "push rejected" in fin.process.log_tail(200), timeout=10)
        assert await _status(fin.inbound_port, "/admin") == 403
        assert await _status(fin.inbound_port, "/") == 200
        # the DestinationRule fixed: the next push is taken (ACK of the newest version), the policy stays
        fixed = await delete(mesh, "DestinationRule", "fin-tls", NS)
        assert fixed["ok"], fixed
        await fin.holds(fixed["revision"])
        assert await _status(fin.inbound_port, "/admin") == 403
        assert await _status(fin.inbound_port, "/") == 200
    finally:
        await app.stop()

"""A sidecar's security entry is keyed by its workload id only, and the registry's key is namespace/service/id:
a workload of another identity could register under the same id (another namespace, another service) and pilot,
which keys workloads by id, then compiled the entry from that registration's namespace and labels and pushed it
under the id. The sidecar took it as its own and served /admin past the DENY policy that selects it. Own
module, so its own control plane.
"""

from __future__ import annotations

import pytest

from proto import subjects
from proto.registry import RegisterReply, RegisterRequest, Workload
from runtime import bus as busmod
from runtime.store import REGISTRY_PREFIX
from tests.integration.conftest import ControlPlane, apply
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio

NS = "owner"
DENY_ADMIN = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: fin}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
"""


async def _status(port: int, path: str) -> int:
    client = Client("127.0.0.1", port)
    try:
        return (await client.request("GET", path, {"host": f"fin.{NS}.svc.cluster.local"})).status
    finally:
        await client.close()


async def test_an_entry_compiled_from_another_identitys_registration_under_its_id_is_not_taken(
        mesh: ControlPlane) -> None:
    reply = await apply(mesh, DENY_ADMIN)
    assert reply["ok"], reply
    app = await Backend("fin").start()
    fin = await mesh.proxy("fin", app.port, 9080, NS, "app=fin").ready()
    assert await _status(fin.inbound_port, "/admin") == 403
    version = fin.config_dump()["security"]["version"]
    victim = fin.config_dump()["proxy"]["id"]

    # a workload of namespace "evil" (its own bus credentials: it may register only its own identity's
    # workloads) registers a service of its own under the victim's id: another registry key, so it is taken
    bus = await busmod.connect(mesh.nats_url, "evil", auth=await mesh.proxy_auth("evil"))
    try:
        impostor = Workload(id=victim, service="x", namespace="evil", address="127.0.0.1", labels={"app": "x"})
        answer = await bus.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, "evil", "default"),
                                RegisterRequest(workload=impostor, ttl=30), RegisterReply)
        assert answer.ok, answer
        # pilot compiles an entry from it, for the victim's id: the sidecar holds that push, and must not take it
        store = await mesh.store()
        try:
            revision = (await store.list(REGISTRY_PREFIX))[1]
        finally:
            await store.close()
        await fin.holds(revision)
        dumped = fin.config_dump()["security"]
        assert dumped["authorization"] == [{"name": f"{NS}/deny-admin", "action": "DENY", "rules": 1}], dumped
        assert dumped["version"] == version
        assert await _status(fin.inbound_port, "/admin") == 403
        assert await _status(fin.inbound_port, "/") == 200
    finally:
        await bus.close()
        await app.stop()

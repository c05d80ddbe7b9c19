"""A sidecar's security entry is keyed by its workload id only, and the registry's key is namespace/service/id:
a workload of another identity could register under the same id (another namespace, another service). Pilot,
which kept workloads by id, then compiled the entry from the later registration's namespace and labels and
pushed it under the id, and the sidecar took it as its own: /admin was served past the DENY policy that
selects it. Pilot now compiles the oldest registration of an id, and the sidecar takes only an entry compiled
from its own; the registry refuses another key's registration of a held id (services/registry/ids.py), so the
workload that registers an id second is told who holds it. Own module, so its own control plane.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from isthmus.launch import free_port
from proto import subjects
from proto.registry import RegisterReply, RegisterRequest, Workload
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend
from tests.integration.inbound_policy import deny_admin, held_version, inbound_get

pytestmark = pytest.mark.asyncio

NS = "owner"
DENY_ADMIN = deny_admin(NS)


async def _status(port: int, path: str, service: str = "fin") -> int:
    return (await inbound_get(port, path, f"{service}.{NS}.svc.cluster.local")).status


async def _impostor(mesh: ControlPlane, workload_id: str) -> RegisterReply:
    """A workload of namespace "evil", with its own bus credentials (it may register only its own identity's
    workloads), registers a service of its own under `workload_id`: another registry key."""
    bus = await busmod.connect(mesh.nats_url, "evil", auth=await mesh.proxy_auth("evil"))
    try:
        impostor = Workload(id=workload_id, service="x", namespace="evil", address="127.0.0.1", labels={"app": "x"})
        return await bus.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, "evil", "default"),
                              RegisterRequest(workload=impostor, ttl=60), RegisterReply)
    finally:
        await bus.close()


async def test_another_identitys_registration_under_its_id_neither_replaces_its_entry_nor_freezes_it(
        mesh: ControlPlane) -> None:
    reply = await apply(mesh, DENY_ADMIN)
    assert reply["ok"], reply
    app = await Backend("fin").start()
    try:
        fin = await mesh.proxy("fin", app.port, 9080, NS, "app=fin").ready()
        assert await _status(fin.inbound_port, "/admin") == 403
        version = fin.config_dump()["security"]["version"]
        refused = await _impostor(mesh, fin.config_dump()["proxy"]["id"])
        assert not refused.ok and f"namespace {NS!r}, service 'fin'" in refused.error, refused
        await asyncio.sleep(1.0)  # pilot once pushed the entry compiled from it within ~100 ms
        dumped = fin.config_dump()["security"]
        assert dumped["authorization"] == [{"name": f"{NS}/deny-admin", "action": "DENY", "rules": 1}], dumped
        assert dumped["version"] == version
        assert await _status(fin.inbound_port, "/admin") == 403
        # nor are its policies frozen while the other stays registered (pilot compiles the registration that
        # came first: once it took the later one, whose entries the sidecar refuses), nor its endpoint gone
        more = await apply(mesh, DENY_ADMIN.replace("deny-admin", "deny-secret").replace("/admin*", "/secret"))
        assert more["ok"], more
        await fin.holds(more["revision"])
        assert await _status(fin.inbound_port, "/secret") == 403
        assert fin.endpoints(f"fin.{NS}.svc.cluster.local") == 1
    finally:
        await app.stop()


async def test_a_sidecar_whose_id_another_identity_registered_first_says_who_holds_it(mesh: ControlPlane) -> None:
    reply = await apply(mesh, DENY_ADMIN)
    assert reply["ok"], reply
    app = await Backend("fin").start()
    try:
        port = free_port()
        workload_id = f"fin-{socket.gethostname()}-{port}.{NS}"  # the id the sidecar will take
        assert (await _impostor(mesh, workload_id)).ok
        fin = mesh.proxy("fin", app.port, 9080, NS, "app=fin", extra=("--inbound-port", str(port)))
        await eventually(lambda: held_version(fin) >= reply["revision"], timeout=20)
        holder = "namespace 'evil', service 'x', service account 'default'"

        def refusal_logged() -> bool:
            return any(line.get("level") == "error" and line.get("event") == "registration refused"
                       and holder in line.get("error", "") for line in fin.log_lines())

        await eventually(refusal_logged, timeout=10)
        status, body = fin.admin("/ready")
        assert status == 503 and holder in body.decode(), body
        assert fin.config_dump()["proxy"]["registration_refused"].startswith(f"workload id {workload_id!r}")
        assert fin.config_dump()["security"]["version"] == 0  # the impostor's entry not taken
        assert await _status(port, "/admin") == 503
        assert await _status(port, "/") == 503
    finally:
        await app.stop()


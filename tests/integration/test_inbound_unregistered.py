"""A sidecar must not serve past the policies that apply to it while pilot does not know its workload.

Its first push can come before pilot has seen its registration, or while no registry answers at all; that
push has no security entry for it, which a sidecar once read as "no policy applies" (PERMISSIVE, no
AuthorizationPolicy), so /admin was served past a DENY policy until the registration reached pilot. And once
registered, a removal of its entry (its lease lapsed while the registry was away) dropped its policies too.
Own module, so its own control plane: it stops the registry.
"""

from __future__ import annotations

import asyncio

import pytest

from runtime.store import REGISTRY_PREFIX
from services.registry.service import workload_key
from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend
from tests.integration.inbound_policy import deny_admin, held_version, inbound_get

pytestmark = pytest.mark.asyncio

NS = "unreg"
DENY_ADMIN = deny_admin(NS)


async def _status(port: int, path: str) -> tuple[int, str]:
    """Status and the body's first line of a request straight to the sidecar's inbound listener."""
    response = await inbound_get(port, path, f"fin.{NS}.svc.cluster.local")
    return response.status, response.text.split("\n", 1)[0]


async def test_an_unregistered_sidecar_admits_nothing_and_a_removed_entry_keeps_its_policy(mesh: ControlPlane) -> None:
    reply = await apply(mesh, DENY_ADMIN)
    assert reply["ok"], reply
    app = await Backend("fin").start()
    mesh.services["registry"].stop()
    try:
        fin = mesh.proxy("fin", app.port, 9080, NS, "app=fin")
        # it holds pilot's config, policy included, but pilot has not seen it register: nothing is admitted
        await eventually(lambda: held_version(fin) >= reply["revision"], timeout=20)
        await asyncio.sleep(0.5)  # a push that lifted the refusal would have come by now
        assert fin.admin("/ready")[0] == 503
        assert await _status(fin.inbound_port, "/admin") == (503, "no config received from pilot yet")
        assert (await _status(fin.inbound_port, "/"))[0] == 503
    finally:
        await mesh.start_service_async("registry")
    await fin.ready()
    assert (await _status(fin.inbound_port, "/admin"))[0] == 403
    assert await _status(fin.inbound_port, "/") == (200, "fin")

    # pilot forgets the workload (its key gone, as when its lease lapses) while no registry can take it back:
    # the last policy stays in force
    workload_id = fin.config_dump()["proxy"]["id"]
    assert fin.config_dump()["security"]["version"] > 0
    mesh.services["registry"].stop()
    store = await mesh.store()
    try:
        deleted = await store.delete(workload_key(NS, "fin", workload_id))
        assert deleted
        revision = (await store.list(REGISTRY_PREFIX))[1]
        await fin.holds(revision)
        assert fin.config_dump()["security"]["authorization"] == [
            {"name": f"{NS}/deny-admin", "action": "DENY", "rules": 1}]
        assert (await _status(fin.inbound_port, "/admin"))[0] == 403
        assert await _status(fin.inbound_port, "/") == (200, "fin")
    finally:
        await store.close()
        await mesh.start_service_async("registry")
    # registered again (its heartbeat hears "unknown lease"): pilot sends its entry again, newer
    await eventually(lambda: fin.config_dump()["security"]["version"] > revision, timeout=20)
    assert (await _status(fin.inbound_port, "/admin"))[0] == 403

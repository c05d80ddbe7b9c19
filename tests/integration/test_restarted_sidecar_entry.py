"""A sidecar restarted with other labels must not take the entry pilot compiled from its previous run.

Its id is the same (service-host-port.namespace), and the previous run's registration outlives it when that
run could not deregister (it crashed, or no registry answered: pilot and the registry then hold every lease).
Pilot keeps compiling the entry from those old labels, and the new run took it as its own: /admin was served
past a DENY policy that selects its new labels, for as long as the registry was away. Own module, so its own
control plane: it stops the registry.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend
from tests.integration.inbound_policy import deny_admin, inbound_get

pytestmark = pytest.mark.asyncio

NS = "rerun"
DENY_ADMIN = deny_admin(NS, "role: admin")


async def _status(port: int, path: str) -> int:
    return (await inbound_get(port, path, f"fin.{NS}.svc.cluster.local")).status


async def test_a_restarted_sidecar_does_not_take_the_entry_of_its_previous_registration(mesh: ControlPlane) -> None:
    reply = await apply(mesh, DENY_ADMIN)
    assert reply["ok"], reply
    app = await Backend("fin").start()
    try:
        first = await mesh.proxy("fin", app.port, 9080, NS, "app=fin").ready()
        port, first_id = first.inbound_port, first.config_dump()["proxy"]["id"]
        assert await _status(port, "/admin") == 200  # role=admin is not among its labels
        mesh.services["registry"].stop()
        try:
            first.process.stop(5)  # cannot deregister: its registration stays, pilot holds its lease
            second = mesh.proxy("fin", app.port, 9080, NS, "app=fin,role=admin", extra=("--inbound-port", str(port)))
            await eventually(lambda: _admin_up(second), timeout=20)
            assert second.config_dump()["proxy"]["id"] == first_id  # the same host, service and port
            await eventually(lambda: second.config_dump()["version"] >= reply["revision"], timeout=20)
            await asyncio.sleep(0.5)
            # pilot knows only the previous run's registration: its entry is not this run's
            assert await _status(port, "/admin") == 503
            assert second.admin("/ready")[0] == 503
        finally:
            await mesh.start_service_async("registry")
        await second.ready()
        assert await _status(port, "/admin") == 403
        assert await _status(port, "/") == 200
    finally:
        await app.stop()


def _admin_up(sidecar) -> bool:  # type: ignore[no-untyped-def]
    try:
        sidecar.config_dump()
        return True
    except OSError:
        return False


"""A pilot replica in the test's own process, on the plane's bus and etcd, as `python -m services.pilot` starts one:
for tests that need to hold its store or its bus in a given state (a lagging watch, a gated read, a cut bus)."""

from __future__ import annotations

import asyncio

from isthmus.launch.credentials import ETCD_SERVICE_USER
from runtime import bus as busmod
from runtime.settings import Settings
from runtime.store import Store
from services.pilot.service import PilotService
from tests.integration.conftest import LEASE_TTL, ControlPlane


async def pilot_replica(mesh: ControlPlane, instance: str, store_class: type[Store] = Store,
                        bus: busmod.Bus | None = None) -> PilotService:
    """The replica, connected and not started (`await pilot.start()`): `store_class` is the real etcd client or a
    subclass of it; `bus`, one the test made (default: the plane's, with pilot's credentials)."""
    pilot = PilotService(Settings(nats_url=mesh.nats_url, etcd_url=mesh.etcd_url, lease_ttl=LEASE_TTL,
                                  instance=instance))
    pilot.bus = bus or await mesh.bus(instance, "pilot")
    host, port = mesh.etcd_url.removeprefix("http://").split(":")
    pilot.store = await store_class.connect(host, int(port), user=ETCD_SERVICE_USER,
                                            password=mesh.creds.etcd_service)
    return pilot


async def stop_replica(pilot: PilotService, close_bus: bool = True) -> None:
    """Stop it, its tasks, and close its store (and its bus, unless the test closed it)."""
    await pilot.stop()
    for task in pilot.tasks:
        task.cancel()
    await asyncio.gather(*pilot.tasks, return_exceptions=True)
    if close_bus:
        await pilot.bus.close()
    await pilot.store.close()

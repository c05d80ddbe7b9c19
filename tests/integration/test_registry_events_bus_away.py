"""The registry leader's EndpointEvents (services/registry/service.py `_publish_events`) when its own bus
connection is away and nats-py's reconnect buffer is full: that event is lost, but the publisher must live on
and announce the changes after the bus is back. The replica runs in this process, its bus through a forwarder
the test cuts (tests/integration/buscut.py); the plane's registry is stopped meanwhile."""

from __future__ import annotations

import asyncio
import json

import pytest

from isthmus.launch.credentials import ETCD_SERVICE_USER
from proto import subjects
from proto.registry import RegisterReply, RegisterRequest, Workload
from runtime import bus as busmod
from runtime.bus import encode
from runtime.settings import Settings
from runtime.store import Store
from services.registry.ids import workload_key
from services.registry.service import RegistryService
from tests.integration.buscut import Cut
from tests.integration.conftest import LEASE_TTL, ControlPlane, eventually

pytestmark = pytest.mark.asyncio


async def test_a_registry_leader_whose_event_finds_its_bus_away_announces_again_once_it_is_back(
        mesh: ControlPlane) -> None:
    cut = Cut(int(mesh.nats_url.rsplit(":", 1)[1]))
    await cut.restore()
    registry = RegistryService(Settings(nats_url=mesh.nats_url, etcd_url=mesh.etcd_url, lease_ttl=LEASE_TTL,
                                        instance="registry-cut"))
    registry.bus = await busmod.connect(f"nats://127.0.0.1:{cut.port}", "registry-cut",
                                        auth=await mesh.auth("registry"))
    host, port = mesh.etcd_url.removeprefix("http://").split(":")
    registry.store = await Store.connect(host, int(port), user=ETCD_SERVICE_USER,
                                         password=mesh.creds.etcd_service)
    mesh.services["registry"].stop(5)
    await registry.start()
    operator = await mesh.nats_client()
    events: list[dict] = []

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        events.append(json.loads(msg.data))

    async def register(workload_id: str) -> None:
        proxy = await busmod.connect(mesh.nats_url, workload_id, auth=await mesh.proxy_auth("awayns"))
        try:
            workload = Workload(id=workload_id, service="s", namespace="awayns", address="127.0.0.1")
            reply = await proxy.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, "awayns", "default"),
                                     RegisterRequest(workload=workload, ttl=60), RegisterReply)
            assert reply.ok, reply
        finally:
            await proxy.close()

    def announced(workload_id: str) -> bool:
        return any(e["workload_id"] == workload_id for e in events)

    try:
        await operator.subscribe(subjects.REGISTRY_EVENTS, cb=on_event)
        await operator.flush()
        await eventually(registry.is_leader, LEASE_TTL * 4)
        await register("away-before")
        await eventually(lambda: announced("away-before"))
        await cut.cut()
        await eventually(lambda: not registry.bus.client.is_connected)
        registry.bus.client._max_pending_size = 1  # its reconnect buffer is full
        lease = await registry.store.grant(60)  # a registration it did not serve (another replica's)
        during = Workload(id="away-during", service="s", namespace="awayns", address="127.0.0.1")
        await registry.store.put(workload_key("awayns", "s", "away-during"), encode(during), lease)
        await asyncio.sleep(0.5)  # its watch saw it, and nats-py refused the event
        await cut.restore()
        await eventually(lambda: registry.bus.client.is_connected, 15)
        assert registry.is_leader()
        await register("away-after")
        await eventually(lambda: announced("away-after"), 10)
    finally:
        await operator.close()
        await registry.stop()
        for task in registry.tasks:
            task.cancel()
        await asyncio.gather(*registry.tasks, return_exceptions=True)
        await registry.bus.close()
        await registry.store.close()
        if cut.server is not None:
            await cut.cut()
        await mesh.start_service_async("registry")

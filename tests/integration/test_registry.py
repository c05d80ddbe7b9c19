"""Registration under leases, endpoint events on the bus, and proxy sync status in etcd."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from runtime.store import STATUS_PREFIX
from tests.integration.conftest import LEASE_TTL, ControlPlane, eventually
from tests.integration.httpclient import Backend

pytestmark = pytest.mark.asyncio
REGISTER = "isthmus.registry.register.default.default"  # a proxy's identity-scoped subject (proto/busauth.py)


async def test_a_workload_that_stops_heartbeating_is_announced_added_then_deleted(mesh: ControlPlane) -> None:
    nc = await mesh.nats_client()  # the operator may watch endpoint events; a proxy registers
    proxy = await mesh.nats_client("proxy:reg")
    events: asyncio.Queue[dict] = asyncio.Queue()

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        event = json.loads(msg.data)
        if event["service"] == "ephemeral":
            await events.put(event)

    await nc.subscribe("isthmus.registry.events", cb=on_event)
    workload = {"id": "ephemeral-1", "service": "ephemeral", "namespace": "reg", "inbound_port": 15999}
    await nc.flush()
    reply = json.loads((await proxy.request("isthmus.registry.register.reg.default",
                                            json.dumps({"workload": workload, "ttl": 1}).encode(), timeout=5)).data)
    assert reply["ok"] and reply["ttl"] == 1
    added = await asyncio.wait_for(events.get(), 5)
    assert (added["type"], added["workload_id"]) == ("ADDED", "ephemeral-1")
    assert added["workload"]["inbound_port"] == 15999
    deleted = await asyncio.wait_for(events.get(), 5)  # no heartbeat: the 1 s lease runs out
    assert (deleted["type"], deleted["workload_id"]) == ("DELETED", "ephemeral-1")
    await nc.close()
    await proxy.close()


async def test_a_heartbeat_for_an_expired_lease_asks_the_proxy_to_register_again(mesh: ControlPlane) -> None:
    nc = await mesh.nats_client("proxy:reg")
    beat = {"workload_id": "gone", "namespace": "reg", "service": "gone", "lease_id": 12345}
    reply = json.loads((await nc.request("isthmus.registry.heartbeat.reg.default", json.dumps(beat).encode(),
                                         timeout=5)).data)
    assert reply == {"ok": False, "error": "unknown lease"}
    await nc.close()


async def test_an_invalid_registration_is_refused_with_a_reason(mesh: ControlPlane) -> None:
    nc = await mesh.nats_client("proxy:reg")
    bad = {"workload": {"id": "a/b", "service": "x", "namespace": "reg"}}
    reply = json.loads((await nc.request("isthmus.registry.register.reg.default", json.dumps(bad).encode(),
                                         timeout=5)).data)
    assert reply["ok"] is False and "/" in reply["error"]
    garbage = json.loads((await nc.request("isthmus.registry.register.reg.default", b"\x00not json",
                                           timeout=5)).data)
    assert garbage["ok"] is False
    await nc.close()


async def test_pilot_records_each_proxys_ack_in_etcd(mesh: ControlPlane) -> None:
    backend = await Backend("status").start()
    sidecar = await mesh.proxy("status-app", backend.port, 9080, "reg").ready()
    proxy_id = sidecar.config_dump()["proxy"]["id"]
    version = sidecar.config_dump()["version"]
    store = await mesh.store()

    async def recorded() -> dict | None:
        """The record once it holds the ACK of the version the sidecar showed (an earlier ACK's may come first)."""
        entry = await store.get(f"{STATUS_PREFIX}{proxy_id}")
        status = json.loads(entry.value) if entry else None
        return status if status is not None and status["version"] >= version else None

    status = await eventually(recorded, timeout=LEASE_TTL + 20)  # a loaded machine: generous, still bounded
    assert status["ok"] is True and status["version"] >= version
    assert (status["service"], status["namespace"]) == ("status-app", "reg")
    await store.close()
    await backend.stop()


async def test_a_registration_with_oversized_labels_is_refused_by_name(mesh: ControlPlane) -> None:
    nc = await mesh.nats_client("proxy")  # namespace default, service account default
    try:
        def register(labels: dict[str, str]) -> bytes:
            return json.dumps({"workload": {"id": "big-1", "service": "big", "labels": labels}}).encode()

        reply = json.loads((await nc.request(REGISTER, register({"app": "v" * 64}), timeout=10)).data)
        assert reply["ok"] is False and "label 'app'" in reply["error"], reply
        many = {f"k{i}": "v" for i in range(65)}
        reply = json.loads((await nc.request(REGISTER, register(many), timeout=10)).data)
        assert reply["ok"] is False and "65 labels, more than 64" in reply["error"], reply
        at_limit = {f"k{i}": "v" * 63 for i in range(64)}
        reply = json.loads((await nc.request(REGISTER, register(at_limit), timeout=10)).data)
        assert reply["ok"] is True, reply
        await nc.request("isthmus.registry.deregister.default.default", json.dumps(
            {"workload_id": "big-1", "namespace": "default", "service": "big"}).encode(), timeout=10)
    finally:
        await nc.close()

"""The id index (services/registry/ids.py) from an attacker's side: a mesh member with valid proxy credentials of
its own identity against a victim's workload id. Real nats-server, etcd, registry, pilot and sidecars; own module,
so its own control plane; each test uses ids of its own."""

from __future__ import annotations

import asyncio
import json

import pytest

from proto import subjects
from proto.registry import DeregisterRequest, HeartbeatReply, RegisterReply, RegisterRequest, Workload
from runtime import bus as busmod
from runtime.bus import encode
from runtime.store import WORKLOAD_ID_PREFIX
from services.registry import ids
from services.registry.ids import workload_key
from tests.integration.registry_client import register
from tests.integration.conftest import ControlPlane, eventually
from tests.integration.httpclient import Backend

pytestmark = pytest.mark.asyncio



async def test_a_configured_sidecar_whose_id_is_taken_while_its_lease_was_lost_says_so_on_ready(
        mesh: ControlPlane) -> None:
    """A running sidecar loses its lease (a partition longer than its TTL), and a member of another namespace
    registers its id in that window. The sidecar's registration is refused from then on, and pilot compiles the
    squatter's entry under the id, so the sidecar is out of the mesh; /ready must say so (docs/security.md: "its
    /ready answers 503 NOT READY: the registry refuses this workload's registration"), as it does for a sidecar
    that was refused from the start, rather than answer 200 LIVE because it still holds its last config."""
    app = await Backend("lost").start()
    try:
        victim = await mesh.proxy("lost", app.port, 9080, "victimns", "app=lost").ready()
        workload_id = victim.config_dump()["proxy"]["id"]
        store = await mesh.store()
        try:
            entry = await store.get(workload_key("victimns", "lost", workload_id))
            assert entry is not None
            await store.revoke(entry.lease)  # as if it lapsed while the sidecar could not reach the bus
        finally:
            await store.close()
        squat = await register(mesh, "squatns", "x", workload_id)
        assert squat.ok, squat  # in the window before the sidecar's next heartbeat finds its lease gone
        holder = "namespace 'squatns', service 'x'"

        def refusal_logged() -> bool:
            return any(line.get("event") == "registration refused" and holder in line.get("error", "")
                       for line in victim.log_lines())

        await eventually(refusal_logged, timeout=10)
        assert holder in victim.config_dump()["proxy"]["registration_refused"]
        status, body = victim.admin("/ready")
        assert status == 503 and holder in body.decode(), (status, body)
    finally:
        await app.stop()


async def test_a_duplicate_left_from_before_the_index_cannot_take_the_id_once_its_holder_restarts(
        mesh: ControlPlane) -> None:
    """Left from before the index: two registrations of one id. The backfill keeps the oldest (pilot's) and deletes
    the other; before, the other took the id when the holder's restart deregistered it, and pilot compiled it."""
    store = await mesh.store()
    try:
        # before the upgrade: the victim's registration and a squatter's of the same id, neither claimed
        victim_lease, squat_lease = await store.grant(60), await store.grant(60)
        victim = Workload(id="dup1", service="a", namespace="victimns", address="127.0.0.1")
        await store.put(workload_key("victimns", "a", "dup1"), encode(victim), victim_lease)
        squat = Workload(id="dup1", service="x", namespace="squatns", address="127.0.0.1")
        await store.put(workload_key("squatns", "x", "dup1"), encode(squat), squat_lease)
        done = await ids.backfill(store)  # the registry leader, once upgraded: the victim's is claimed, and the
        # squatter's duplicate (never compiled by pilot) deleted: its sidecar registers again and is refused
        assert done.claimed >= 1 and workload_key("squatns", "x", "dup1") in done.removed
        claim = await store.get(WORKLOAD_ID_PREFIX + "dup1")
        assert claim is not None and json.loads(claim.value)["namespace"] == "victimns"
        # the victim's sidecar restarts: its earlier run deregisters (workload and claim, in one transaction),
        # the new run registers the same key again
        entry, problem = await ids.deregister(store, "victimns", "a", "dup1", lambda ns, sa: "", victim_lease)
        assert entry is not None and not problem
        again = await register(mesh, "victimns", "a", "dup1")
        # Either refused, naming the squatter whose registration pilot compiles for the id (the victim would then
        # see why on /ready), or registered as the only registration of the id: never accepted while pilot compiles
        # another registration, so that the victim's sidecar admits nothing with no reason anywhere.
        squatter_left = await store.get(workload_key("squatns", "x", "dup1")) is not None
        assert not (again.ok and squatter_left), (again, "the squatter's older registration is still stored")
    finally:
        await store.close()



@pytest.mark.parametrize("workload_id", ["odd.", "caf\u00e9-\u0301", "a\u0000b", " ", "x" * 253, "*", ">", ".."])
async def test_an_odd_id_is_claimed_like_any_other(mesh: ControlPlane, workload_id: str) -> None:
    assert (await register(mesh, "oddns", "a", workload_id)).ok
    refused = await register(mesh, "otherns", "b", workload_id)
    assert not refused.ok and "namespace 'oddns', service 'a'" in refused.error, refused


async def test_an_id_longer_than_a_dns_name_is_refused(mesh: ControlPlane) -> None:
    refused = await register(mesh, "oddns", "a", "x" * 254)
    assert not refused.ok and "more than 253" in refused.error, refused


async def test_registrations_and_deregistrations_of_one_id_racing_from_two_namespaces_leave_one_holder(
        mesh: ControlPlane) -> None:
    """Two members register, deregister and register again one id as fast as they can: whatever interleaving,
    afterwards at most one namespace holds it, its claim names that registration, and no claim is left behind
    without its registration."""
    for namespace in ("racea", "raceb"):
        await mesh.proxy_auth(namespace)

    async def churn(namespace: str) -> None:
        bus = await busmod.connect(mesh.nats_url, namespace, auth=await mesh.proxy_auth(namespace))
        try:
            for _ in range(15):
                workload = Workload(id="churn", service="s", namespace=namespace, address="127.0.0.1")
                reply = await bus.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, namespace, "default"),
                                       RegisterRequest(workload=workload, ttl=60), RegisterReply)
                if reply.ok:
                    request = DeregisterRequest(workload_id="churn", namespace=namespace, service="s",
                                                lease_id=reply.lease_id)
                    await bus.call(subjects.identity_subject(subjects.REGISTRY_DEREGISTER, namespace, "default"),
                                   request, HeartbeatReply)
            workload = Workload(id="churn", service="s", namespace=namespace, address="127.0.0.1")
            await bus.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, namespace, "default"),
                           RegisterRequest(workload=workload, ttl=60), RegisterReply)
        finally:
            await bus.close()

    await asyncio.gather(churn("racea"), churn("raceb"))
    store = await mesh.store()
    try:
        held = [ns for ns in ("racea", "raceb") if await store.get(workload_key(ns, "s", "churn")) is not None]
        assert len(held) == 1, held
        claim = await store.get(WORKLOAD_ID_PREFIX + "churn")
        entry = await store.get(workload_key(held[0], "s", "churn"))
        assert claim is not None and entry is not None
        assert json.loads(claim.value)["namespace"] == held[0] and claim.lease == entry.lease
    finally:
        await store.close()



async def test_a_backfill_racing_new_registrations_of_an_unclaimed_id_leaves_a_claim_naming_a_registration(
        mesh: ControlPlane) -> None:
    store = await mesh.store()
    try:
        for round_ in range(5):
            workload_id = f"bf-{round_}"
            lease = await store.grant(60)  # a registration older than the index: no claim
            legacy = Workload(id=workload_id, service="a", namespace="bfold", address="127.0.0.1")
            await store.put(workload_key("bfold", "a", workload_id), encode(legacy), lease)
            await asyncio.gather(ids.backfill(store), register(mesh, "bfold", "a", workload_id),
                                 register(mesh, "bfnew", "b", workload_id), ids.backfill(store))
            claim = await store.get(WORKLOAD_ID_PREFIX + workload_id)
            assert claim is not None
            holder = json.loads(claim.value)
            entry = await store.get(workload_key(holder["namespace"], holder["service"], workload_id))
            assert entry is not None and entry.lease == claim.lease, (holder, entry, claim)
    finally:
        await store.close()


async def test_a_configured_sidecar_stays_ready_while_etcd_is_down(mesh: ControlPlane) -> None:
    """Static stability: with etcd down the registry answers a registration with etcd's error (its heartbeat
    fails the same way, so the sidecar registers again). That is no refusal: a configured sidecar keeps /ready
    200 (a load balancer must not pull every workload out of service for a control-plane outage), and does not
    say the registry refuses it. Last in this module: it stops the plane's etcd."""
    app = await Backend("calm").start()
    try:
        sidecar = await mesh.proxy("calm", app.port, 9080, "calmns", "app=calm").ready()
        await mesh.proxy_auth("calmns")  # issued now: the auth service needs etcd too
        mesh.etcd.stop()
        try:
            def tried_again() -> bool:  # its heartbeat failed, and it registered again, in vain
                events = [line.get("event") for line in sidecar.log_lines()]
                return "lease lost, registering again" in events

            await eventually(tried_again, timeout=15)
            await asyncio.sleep(2.0)  # its registration's answer
            status, body = sidecar.admin("/ready")
            assert status == 200, (status, body)
            assert sidecar.config_dump()["proxy"]["registration_refused"] == ""
        finally:
            mesh.etcd.start()

        async def registered_again() -> bool:
            return (await register(mesh, "calmns", "other", "calm-after")).ok

        await eventually(registered_again, timeout=30, interval=0.5)
        await eventually(lambda: not sidecar.config_dump()["proxy"]["registration_refused"], timeout=20)
    finally:
        await app.stop()

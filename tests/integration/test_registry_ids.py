"""A workload id is one registration across the mesh (services/registry/ids.py): pilot and the sidecars know a
workload by its id alone, so a workload of another namespace or service that registered a sidecar's id first
left that sidecar without its security entry, admitting nothing, with no error it would see. The registry now
claims the id in the registration's own transaction and refuses another key's registration of it, naming the
holder. Own module, so its own control plane; each test uses ids of its own."""

from __future__ import annotations

import asyncio
import json

import pytest

from proto import subjects
from proto.registry import (DeregisterRequest, HeartbeatReply, Workload,
                            WorkloadIdClaim, WorkloadListReply, WorkloadListRequest)
from runtime import bus as busmod
from runtime.bus import encode
from runtime.store import WORKLOAD_ID_PREFIX
from services.registry import ids
from services.registry.ids import workload_key
from tests.integration.conftest import ControlPlane, eventually
from tests.integration.registry_client import deregister, register

pytestmark = pytest.mark.asyncio


async def test_an_id_registered_by_another_namespace_is_refused_naming_who_holds_it(mesh: ControlPlane) -> None:
    first = await register(mesh, "squat", "b", "x1", service_account="squatter")
    assert first.ok, first
    refused = await register(mesh, "victim", "a", "x1")
    assert not refused.ok
    assert "namespace 'squat', service 'b', service account 'squatter'" in refused.error, refused.error
    assert "another id" in refused.error and "lease lapses" in refused.error
    # nor may another service of the holder's own namespace take it: pilot knows the workload by id only
    assert "service 'b'" in (await register(mesh, "squat", "c", "x1", service_account="squatter")).error
    store = await mesh.store()
    try:
        assert await store.get(workload_key("victim", "a", "x1")) is None
    finally:
        await store.close()


async def test_the_same_registration_again_succeeds_and_moves_the_claim_to_its_new_lease(mesh: ControlPlane) -> None:
    first = await register(mesh, "again", "a", "x2")
    second = await register(mesh, "again", "a", "x2")  # a restarted sidecar
    assert first.ok and second.ok and second.lease_id != first.lease_id
    store = await mesh.store()
    try:
        claim = await store.get(WORKLOAD_ID_PREFIX + "x2")
        workload = await store.get(workload_key("again", "a", "x2"))
        assert claim is not None and workload is not None
        assert claim.lease == workload.lease == second.lease_id
        assert json.loads(claim.value) == {"namespace": "again", "service": "a"}  # service account: the default
        assert claim.mod_revision == workload.mod_revision  # one transaction
        await store.revoke(first.lease_id)  # the first run's lease going holds nothing any more
        assert await store.get(WORKLOAD_ID_PREFIX + "x2") is not None
    finally:
        await store.close()


async def test_a_deregistered_holder_frees_the_id(mesh: ControlPlane) -> None:
    held = await register(mesh, "squat", "b", "x3", service_account="squatter")
    assert held.ok and not (await register(mesh, "victim", "a", "x3")).ok
    bus = await busmod.connect(mesh.nats_url, "squat", auth=await mesh.proxy_auth("squat", "squatter"))
    try:
        request = DeregisterRequest(workload_id="x3", namespace="squat", service="b")  # no lease named
        gone = await bus.call(subjects.identity_subject(subjects.REGISTRY_DEREGISTER, "squat", "squatter"), request,
                              HeartbeatReply)
    finally:
        await bus.close()
    assert gone.ok, gone
    store = await mesh.store()
    try:
        assert await store.get(WORKLOAD_ID_PREFIX + "x3") is None  # deleted with the workload, not left to the lease
    finally:
        await store.close()
    taken = await register(mesh, "victim", "a", "x3")
    assert taken.ok, taken


async def test_a_holder_whose_lease_lapses_frees_the_id(mesh: ControlPlane) -> None:
    assert (await register(mesh, "squat", "b", "x4", ttl=1, service_account="squatter")).ok  # and no heartbeat
    assert not (await register(mesh, "victim", "a", "x4")).ok

    async def taken() -> bool:
        return (await register(mesh, "victim", "a", "x4")).ok

    await eventually(taken, timeout=10, interval=0.5)


async def test_of_racing_registrations_of_one_id_from_different_services_exactly_one_wins(mesh: ControlPlane) -> None:
    contenders = [(f"race{n}", f"s{n}") for n in range(6)]
    for namespace, _ in contenders:  # credentials first, so the registrations leave together
        await mesh.proxy_auth(namespace)
    for round_ in range(3):
        replies = await asyncio.gather(*(register(mesh, ns, service, f"x5-{round_}") for ns, service in contenders))
        winners = [contender for contender, reply in zip(contenders, replies) if reply.ok]
        assert len(winners) == 1, replies
        (namespace, service), = winners
        for reply in replies:
            if not reply.ok:  # a loser of the race re-read and was told who won
                assert f"namespace {namespace!r}, service {service!r}" in reply.error, reply.error
        store = await mesh.store()
        try:
            registered = [ns for ns, svc in contenders if await store.get(workload_key(ns, svc, f"x5-{round_}"))]
            assert registered == [namespace]
            claim = await store.get(WORKLOAD_ID_PREFIX + f"x5-{round_}")
            assert claim is not None and json.loads(claim.value)["namespace"] == namespace
        finally:
            await store.close()


async def test_an_id_registered_before_the_index_goes_to_the_first_registration_that_writes_it(
        mesh: ControlPlane) -> None:
    store = await mesh.store()
    try:
        lease = await store.grant(60)  # as a registry older than the index left it: the workload, no claim
        legacy = Workload(id="x6", service="a", namespace="old", address="127.0.0.1")
        await store.put(workload_key("old", "a", "x6"), encode(legacy), lease)
        again = await register(mesh, "old", "a", "x6")  # its sidecar, restarted after the upgrade
        assert again.ok, again
        claim = await store.get(WORKLOAD_ID_PREFIX + "x6")
        assert claim is not None and claim.lease == again.lease_id
        # a claim whose registration is gone (deleted by an older registry, which left the claim to its lease)
        # names no holder: the id is taken
        stale = await store.grant(60)
        await store.put(WORKLOAD_ID_PREFIX + "x7", encode(WorkloadIdClaim(namespace="gone", service="b")), stale)
        taken = await register(mesh, "old", "a", "x7")
        assert taken.ok, taken
        assert json.loads((await store.get(WORKLOAD_ID_PREFIX + "x7")).value)["namespace"] == "old"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_the_claims_are_neither_listed_nor_announced_as_workloads(mesh: ControlPlane) -> None:
    operator = await mesh.bus("ids-operator")
    events: list[dict] = []
    try:
        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            events.append(json.loads(msg.data))

        nc = await mesh.nats_client()
        await nc.subscribe(subjects.REGISTRY_EVENTS, cb=on_event)
        await nc.flush()
        assert (await register(mesh, "listed", "a", "x8")).ok
        await eventually(lambda: any(e["workload_id"] == "x8" for e in events), timeout=5)
        await asyncio.sleep(0.5)
        assert [(e["type"], e["namespace"], e["service"]) for e in events if e["workload_id"] == "x8"] == [
            ("ADDED", "listed", "a")]
        assert all(e["namespace"] != "workload-ids" for e in events)
        listed = await operator.call(subjects.REGISTRY_LIST, WorkloadListRequest(), WorkloadListReply)
        assert listed.ok and all(w.id and w.service for w in listed.workloads)
        store = await mesh.store()
        try:
            registered = len(await store.keys("/isthmus/registry/"))
            assert await store.get(WORKLOAD_ID_PREFIX + "x8") is not None  # claimed, where neither looks
        finally:
            await store.close()
        assert listed.total == registered
        await nc.close()
    finally:
        await operator.close()


async def test_a_deregistration_naming_another_registrations_lease_leaves_that_lease_alone(mesh: ControlPlane) -> None:
    held = await register(mesh, "victim", "a", "x9")
    assert held.ok, held
    # another namespace deregisters a workload of its own (registered or not) and names the victim's lease
    assert (await register(mesh, "squat", "b", "y9")).ok
    for workload_id in ("y9", "never-registered"):
        assert (await deregister(mesh, "squat", "b", workload_id, lease_id=held.lease_id)).ok
    store = await mesh.store()
    try:
        entry = await store.get(workload_key("victim", "a", "x9"))
        assert entry is not None and entry.lease == held.lease_id
        assert await store.refresh(held.lease_id) > 0
        # and its own workload was not registered under the lease it named: it stays
        assert (await store.get(workload_key("squat", "b", "y9"))) is not None
    finally:
        await store.close()


async def test_an_earlier_runs_deregistration_leaves_the_restarted_sidecars_registration(mesh: ControlPlane) -> None:
    """A sidecar restarted on the same id registers again (a new lease) while its earlier run still stops: that
    run's deregistration names its own, older lease and must not delete the new registration or its claim."""
    earlier = await register(mesh, "restart", "a", "x10")
    later = await register(mesh, "restart", "a", "x10")
    assert earlier.ok and later.ok and earlier.lease_id != later.lease_id
    assert (await deregister(mesh, "restart", "a", "x10", lease_id=earlier.lease_id)).ok
    store = await mesh.store()
    try:
        entry = await store.get(workload_key("restart", "a", "x10"))
        assert entry is not None and entry.lease == later.lease_id
        assert await store.get(ids.id_key("x10")) is not None
    finally:
        await store.close()
    assert (await deregister(mesh, "restart", "a", "x10", lease_id=later.lease_id)).ok
    store = await mesh.store()
    try:
        assert await store.get(workload_key("restart", "a", "x10")) is None
        assert await store.get(ids.id_key("x10")) is None
    finally:
        await store.close()


async def test_ids_registered_before_the_index_are_claimed_for_their_oldest_registration(mesh: ControlPlane) -> None:
    store = await mesh.store()
    try:
        leases = [await store.grant(60), await store.grant(60)]
        # as a registry older than the index left them: one id under two keys (the later one another
        # namespace's), and neither claimed
        for (namespace, service), lease in zip((("first", "a"), ("later", "b")), leases):
            workload = Workload(id="z1", service=service, namespace=namespace, address="127.0.0.1",
                                service_account="sa-" + namespace)
            await store.put(workload_key(namespace, service, "z1"), encode(workload), lease)
        assert (await ids.backfill(store)).claimed >= 1
        claim = await store.get(WORKLOAD_ID_PREFIX + "z1")
        assert claim is not None and claim.lease == leases[0]  # the registration pilot compiles
        assert json.loads(claim.value) == {"namespace": "first", "service": "a", "service_account": "sa-first"}
        assert (await ids.backfill(store)).claimed == 0  # claimed once
    finally:
        await store.close()


async def test_the_registry_leader_claims_ids_registered_before_the_index_once_elected(mesh: ControlPlane) -> None:
    store = await mesh.store()
    try:
        lease = await store.grant(60)
        workload = Workload(id="z2", service="a", namespace="victim", address="127.0.0.1")
        await store.put(workload_key("victim", "a", "z2"), encode(workload), lease)  # a running sidecar's
        await mesh.restart_service("registry")  # the upgrade

        async def claimed() -> bool:
            return await store.get(WORKLOAD_ID_PREFIX + "z2") is not None

        await eventually(claimed, timeout=15)
        refused = await register(mesh, "squat", "b", "z2")
        assert not refused.ok and "namespace 'victim', service 'a'" in refused.error, refused
    finally:
        await store.close()


async def test_a_registration_that_loses_every_race_is_contended_not_refused(mesh: ControlPlane) -> None:
    """Writes of the same id between each read and its compare-and-swap (real etcd, a competing write before every
    swap): the registration ends in Contended, which the registry answers as transient (the sidecar retries, and
    /ready does not call it a refusal), and the lease it took is revoked."""
    store = await mesh.store()
    swap = store.swap
    leases: list[int] = []

    async def raced(expect: dict[str, int], puts: dict[str, bytes], deletes: tuple[str, ...] = (),
                    lease: int = 0) -> bool:
        leases.append(lease)
        await store.put(ids.id_key("x11"), b"{}")  # another writer got there first
        return await swap(expect, puts, deletes, lease)

    store.swap = raced  # type: ignore[method-assign]
    try:
        workload = Workload(id="x11", service="a", namespace="race", address="127.0.0.1")
        with pytest.raises(ids.Contended, match="changed while registering"):
            await ids.register(store, workload, 60, lambda namespace, account: "")
        assert len(leases) == ids.ATTEMPTS and await store.refresh(leases[0]) == 0  # revoked
    finally:
        await store.close()


async def test_a_registration_that_loses_all_but_its_last_race_is_registered(mesh: ControlPlane) -> None:
    """The limit's other side: ATTEMPTS - 1 rounds lost (a competing write before each of those swaps), the last
    round wins; the registration holds the id under the one lease left, the lost rounds' lease revoked or reused."""
    store = await mesh.store()
    swap = store.swap
    rounds: list[int] = []

    async def raced(expect: dict[str, int], puts: dict[str, bytes], deletes: tuple[str, ...] = (),
                    lease: int = 0) -> bool:
        rounds.append(lease)
        if len(rounds) < ids.ATTEMPTS:
            await store.put(ids.id_key("x12"), b"{}")  # another writer got there first
        return await swap(expect, puts, deletes, lease)

    store.swap = raced  # type: ignore[method-assign]
    try:
        workload = Workload(id="x12", service="a", namespace="race", address="127.0.0.1")
        lease, problem = await ids.register(store, workload, 60, lambda namespace, account: "")
        assert lease > 0 and problem == "" and len(rounds) == ids.ATTEMPTS
        claim = await store.get(ids.id_key("x12"))
        assert claim is not None and claim.lease == lease
        assert json.loads(claim.value)["namespace"] == "race"
    finally:
        store.swap = swap  # type: ignore[method-assign]
        await store.close()

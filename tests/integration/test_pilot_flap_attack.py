"""A pilot replica whose leadership flaps (elected, deposed, elected again) while one of its leader-only loops waits
on etcd (services/pilot/service.py): once re-elected it is not the leader it was, and until it has caught up
with the store (`_take_over`) it must publish nothing, neither a push of its old epoch nor a resync nudge.

The replica runs in this process so its etcd reads can be held back deterministically (the real etcd client,
with a gate on `list` per prefix, as a slow etcd member answers); the plane's own pilot is stopped meanwhile."""

from __future__ import annotations

import asyncio
import time

import pytest

from proto import subjects
from proto.registry import RegisterReply, RegisterRequest, Workload
from proto.xds import ProxyStatus, Push, SnapshotRequest
from runtime import bus as busmod
from runtime.bus import decode, encode
from runtime.store import CONFIG_PREFIX, LEADER_PREFIX, STATUS_PREFIX, Entry, Store
from tests.integration.buscut import Cut
from tests.integration.conftest import LEASE_TTL, ControlPlane, eventually
from tests.integration.pilot_replica import pilot_replica, stop_replica

pytestmark = pytest.mark.asyncio


class GatedStore(Store):
    """The real etcd client; a `list` of a held prefix waits until that prefix is released."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        super().__init__(client)
        self.open: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, int] = {}

    def hold(self, prefix: str) -> None:
        self.open[prefix] = asyncio.Event()
        self.waiting[prefix] = 0

    def release(self, prefix: str) -> None:
        self.open.pop(prefix).set()

    async def list(self, prefix: str) -> tuple[list[Entry], int]:
        gate = self.open.get(prefix)
        if gate is not None:
            self.waiting[prefix] += 1
            await gate.wait()
        return await super().list(prefix)


async def test_a_replica_deposed_and_reelected_while_its_resync_check_waits_publishes_nothing_before_catching_up(
        mesh: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_PUSH_RESYNC_INTERVAL", "0.2")
    pilot = await pilot_replica(mesh, "pilot-flapping", GatedStore)
    store = pilot.store
    assert isinstance(store, GatedStore)
    mesh.services["pilot"].stop(5)  # our replica is the only one
    await pilot.start()
    watcher = await mesh.bus("test-flap", "proxy")  # sees what every proxy is sent
    pushes: list[Push] = []
    try:
        await eventually(pilot.is_leader, LEASE_TTL * 4)
        # a registered proxy whose ACK stays behind the pushed version: the leader nudges it every interval
        proxy = await busmod.connect(mesh.nats_url, "flap-p1", auth=await mesh.proxy_auth("flapns"))
        try:
            workload = Workload(id="flap-p1", service="a", namespace="flapns", address="127.0.0.1")
            reply = await proxy.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, "flapns", "default"),
                                     RegisterRequest(workload=workload, ttl=60), RegisterReply)
            assert reply.ok, reply
        finally:
            await proxy.close()
        await eventually(lambda: "flap-p1" in pilot.inputs.workloads and pilot.pusher.pushed_version > 0)
        await store.put(STATUS_PREFIX + "flap-p1", encode(ProxyStatus(proxy_id="flap-p1", namespace="flapns",
                                                                      service="a", updated_at=time.time())))
        nudges: list[Push] = []

        async def nudged(data: bytes) -> None:
            nudges.append(decode(data, Push))

        await watcher.listen(subjects.XDS_PUSH, nudged)
        await eventually(lambda: len(nudges) >= 2)  # it is nudged, once per interval
        store.hold(STATUS_PREFIX)  # the next resync check waits on its read of the proxies' status
        store.hold(CONFIG_PREFIX)  # and the take-over after a re-election, on its re-list
        await eventually(lambda: store.waiting[STATUS_PREFIX] > 0)
        await asyncio.sleep(0.5)  # the resync loop (every 0.1 s) is among the waiting readers
        term = pilot._term
        admin = await mesh.store()
        try:
            leader = await admin.get(LEADER_PREFIX + "pilot")
            assert leader is not None and leader.value == b"pilot-flapping"
            await admin.revoke(leader.lease)  # its lease lost (etcd compacted it, a partition): deposed
        finally:
            await admin.close()
        await eventually(lambda: pilot._term >= term + 2 and pilot.election.is_leader, LEASE_TTL * 4)
        assert not pilot.serving and not pilot.is_leader()  # re-elected, its re-list held back: not caught up

        async def seen(data: bytes) -> None:
            pushes.append(decode(data, Push))

        await watcher.listen(subjects.XDS_PUSH, seen)
        nudges.clear()
        store.release(STATUS_PREFIX)  # the resync check it began as the leader of the last term completes
        await asyncio.sleep(1.0)
        assert not pilot.serving
        assert pushes == [] and nudges == [], f"published while not caught up: {pushes}"
        epoch, version = pilot.pusher.epoch, pilot.pusher.version
        store.release(CONFIG_PREFIX)  # its re-list completes: it serves, in a new epoch
        await eventually(pilot.is_leader, LEASE_TTL * 2)
        snapshot = decode(await watcher.request(subjects.XDS_SNAPSHOT, encode(SnapshotRequest(proxy_id="flap-p1")),
                                                timeout=5), Push)
        assert snapshot.full and snapshot.epoch != epoch and snapshot.version >= version
        assert any(p.epoch == snapshot.epoch for p in pushes)  # the new epoch announced
    finally:
        for prefix in list(store.open):
            store.release(prefix)
        await watcher.close()
        await stop_replica(pilot)
        await mesh.start_service_async("pilot")


async def test_a_replica_elected_whose_bus_is_closed_resigns_so_another_serves(mesh: ControlPlane) -> None:
    """A replica whose bus connection closed for good cannot answer snapshots: elected, it must resign
    (services/pilot/service.py `_take_over`), not keep the leadership it holds through etcd while serving no
    proxy, so that another replica takes over."""
    pilot = await pilot_replica(mesh, "pilot-closed")
    await pilot.start()
    asker = await mesh.bus("test-closed", "proxy")
    try:
        assert not pilot.election.is_leader  # the plane's pilot leads
        await pilot.bus.close()
        mesh.services["pilot"].stop(5)
        await eventually(lambda: pilot._term >= 1, LEASE_TTL * 4)  # elected, and its take-over cannot serve
        await mesh.start_service_async("pilot")

        async def answered() -> bool:
            try:
                reply = await asker.request(subjects.XDS_SNAPSHOT, encode(SnapshotRequest(proxy_id="x")), timeout=1)
            except busmod.BusError:
                return False
            return decode(reply, Push).full

        await eventually(answered, LEASE_TTL * 8, interval=0.5)
    finally:
        await asker.close()
        await stop_replica(pilot, close_bus=False)  # closed by the test
        if not mesh.services["pilot"].is_running:
            await mesh.start_service_async("pilot")


async def test_a_leader_whose_push_finds_its_bus_away_pushes_again_once_it_is_back(mesh: ControlPlane) -> None:
    """The leader compiles a change while its bus connection is away and nats-py's reconnect buffer is full:
    the push is lost (proxies resync by the next one's gap), but its compile loop must live on and push the
    changes after the bus is back (nats-py's OutboundBufferLimitError escaped `except BusError`, and the loop's
    task ended: that pilot never pushed again, while it kept the leadership)."""
    cut = Cut(int(mesh.nats_url.rsplit(":", 1)[1]))
    await cut.restore()
    pilot = await pilot_replica(mesh, "pilot-cut", bus=await busmod.connect(
        f"nats://127.0.0.1:{cut.port}", "pilot-cut", auth=await mesh.auth("pilot")))
    mesh.services["pilot"].stop(5)
    await pilot.start()
    watcher = await mesh.bus("test-cut", "proxy")
    pushes: list[Push] = []

    async def seen(data: bytes) -> None:
        pushes.append(decode(data, Push))

    async def register(service: str) -> None:
        proxy = await busmod.connect(mesh.nats_url, service, auth=await mesh.proxy_auth("cutns"))
        try:
            workload = Workload(id=f"{service}-1", service=service, namespace="cutns", address="127.0.0.1")
            reply = await proxy.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, "cutns", "default"),
                                     RegisterRequest(workload=workload, ttl=60), RegisterReply)
            assert reply.ok, reply
        finally:
            await proxy.close()

    def pushed(service: str) -> bool:
        return any(c.host.startswith(f"{service}.cutns.") for p in pushes for c in p.clusters)

    try:
        await watcher.listen(subjects.XDS_PUSH, seen)
        await eventually(pilot.is_leader, LEASE_TTL * 4)
        await register("before")
        await eventually(lambda: pushed("before"))
        await cut.cut()
        await eventually(lambda: not pilot.bus.client.is_connected)
        pilot.bus.client._max_pending_size = 1  # its reconnect buffer is full (a large push during an outage)
        await register("during")
        await eventually(lambda: "during-1" in pilot.inputs.workloads)
        await asyncio.sleep(0.5)  # compiled, and its push refused by nats-py
        await cut.restore()
        await eventually(lambda: pilot.bus.client.is_connected, 15)
        assert pilot.is_leader()
        await register("after")
        await eventually(lambda: pushed("after"), 10)
    finally:
        await watcher.close()
        await stop_replica(pilot)
        if cut.server is not None:
            await cut.cut()
        await mesh.start_service_async("pilot")

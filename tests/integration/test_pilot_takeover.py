"""A pilot replica whose etcd watch lags wins the election (services/pilot/service.py, _take_over): it must not
send proxies config older than the previous leader pushed. Here a DENY AuthorizationPolicy is applied and pushed
by the leader while the other replica's watch holds its events back; the leader stops, the lagging replica
takes over, and the sidecar, which takes the new epoch's snapshot wholesale, must keep the DENY.

The lagging replica runs in this process so its watch can be held back deterministically: its store is the
real etcd client, with a gate on the events its watches yield (a watch that lags, as one does while it
reconnects or while its etcd member is behind). Freezing a whole replica (SIGSTOP) does not make it lag:
resumed, it reads the watch events waiting in its socket before the answers of its election round trips."""

from __future__ import annotations

import time

import pytest

from proto import subjects
from proto.xds import Push, SnapshotRequest
from runtime.bus import decode, encode
from services.pilot.service import PilotService
from tests.integration.conftest import LEASE_TTL, ControlPlane, apply_ok, eventually
from tests.integration.httpclient import Backend
from tests.integration.pilot_replica import pilot_replica, stop_replica
from tests.lagging_store import LaggingStore

pytestmark = pytest.mark.asyncio


async def lagging_pilot(mesh: ControlPlane) -> PilotService:
    """A second pilot replica, started as `python -m services.pilot` starts one, on the plane's bus and etcd."""
    pilot = await pilot_replica(mesh, "pilot-lagging", LaggingStore)
    await pilot.start()
    return pilot


DENY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: takeover}
spec:
  selector: {matchLabels: {app: fin}}
  action: DENY
  rules: [{to: [{operation: {methods: [POST]}}]}]
"""


async def test_a_replica_elected_while_its_watch_lags_serves_nothing_older_than_the_last_leader_pushed(
        mesh: ControlPlane) -> None:
    app = await Backend("fin").start()
    sidecar = await mesh.proxy("fin", app.port, 9080, "takeover", "app=fin").ready()
    lagging = await lagging_pilot(mesh)
    watcher = await mesh.bus("test-takeover", "proxy")  # sees what every proxy is sent
    pushes: list[Push] = []

    async def seen(data: bytes) -> None:
        pushes.append(decode(data, Push))

    try:
        await watcher.listen(subjects.XDS_PUSH, seen)
        assert not lagging.election.is_leader  # the plane's pilot leads
        epoch = sidecar.config_dump()["epoch"]
        lagging.store.flowing.clear()  # type: ignore[attr-defined]
        await apply_ok(mesh, DENY, sidecar)  # the leader pushed it; the lagging replica has not seen it
        held = sidecar.config_dump()["security"]["authorization"]
        assert held == [{"name": "takeover/deny-post", "action": "DENY", "rules": 1}], held
        assert ("AuthorizationPolicy", "takeover", "deny-post") not in lagging.inputs.resources

        mesh.services["pilot"].stop(5)  # SIGTERM: the leader resigns, the lagging replica is elected at once
        stopped = time.monotonic()
        await eventually(lambda: lagging.election.is_leader, LEASE_TTL * 3)
        new = await eventually(lambda: next((p for p in pushes if p.epoch != epoch), None), LEASE_TTL * 3)
        assert time.monotonic() - stopped < LEASE_TTL * 3
        await eventually(lambda: sidecar.config_dump()["epoch"] == new.epoch)  # its snapshot applied
        held = sidecar.config_dump()["security"]["authorization"]
        assert held == [{"name": "takeover/deny-post", "action": "DENY", "rules": 1}], held
        # what any proxy asking now is sent: the DENY in the entry of the sidecar's workload
        snapshot = decode(await watcher.request(subjects.XDS_SNAPSHOT, encode(SnapshotRequest(proxy_id="x")),
                                                timeout=5), Push)
        entries = [s for s in snapshot.security if s.namespace == "takeover"]
        assert [[p.name for p in s.authorization] for s in entries] == [["takeover/deny-post"]], entries
        # every push of the new leader carries the DENY or leaves the entry alone
        for push in pushes:
            for entry in push.security if push.epoch == new.epoch else ():
                assert [p.name for p in entry.authorization] == ["takeover/deny-post"], push
    finally:
        lagging.store.flowing.set()  # type: ignore[attr-defined]
        await watcher.close()
        await stop_replica(lagging)
        await app.stop()
        await mesh.start_service_async("pilot")

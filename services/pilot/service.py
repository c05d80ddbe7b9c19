"""Pilot: the config API (Istio's Galley) and config compilation and push (Istio's Pilot).

Every replica serves the config API (queue group "pilot"), keeps its inputs current from etcd and
compiles; only the leader publishes pushes and config events and answers snapshot requests, so
proxies see one sequence of pushes. A replica that wins the election first re-reads its inputs from
the store (`_take_over`): its watches may lag the store, and proxies take a new epoch's snapshot
wholesale, so serving at once could send them older config than the previous leader pushed (a DENY
policy applied just before the failover, gone from every sidecar until the watch caught up).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from proto import subjects
from proto.config_api import ConfigEvent
from proto.registry import Workload
from proto.xds import Ack, MeshConfig, ProxyStatusReply, ProxyStatusRequest, SnapshotRequest
from runtime.bus import BusError, decode, encode
from runtime.leader import LeaderElection
from runtime.lease_hold import LeaseHold
from runtime.service import ServiceProcess
from runtime.store import StoreError
from services.pilot.config_api import ConfigApi
from services.pilot.decode_worker import DecodeWorker
from services.pilot.inputs import CONFIG, Inputs, InputWatcher, ResourceKey
from services.pilot.jwks_resolver import JwksResolver, JwksSettings
from services.pilot.metrics import PilotMetrics
from services.pilot.proxy_status import ProxyStatusRecorder
from services.pilot.proxy_view import status_reply
from services.pilot.pusher import Pusher
from services.pilot.resync import StaleWatch, interval_from_env

# Coalesce a burst of etcd events into one compile. Config changes go out almost at once; endpoint
# changes wait a little longer (Istio waits 100 ms), so a thousand workloads registering together
# cost a few pushes rather than hundreds, each carrying whole clusters to every proxy.
DEBOUNCE_CONFIG = 0.005
DEBOUNCE_ENDPOINTS = 0.1


class PilotService(ServiceProcess):
    name: ClassVar[str] = "pilot"

    async def start(self) -> None:
        try:
            self.resync_interval = interval_from_env()
        except ValueError as exc:  # the operator's to fix: one line, exit 1
            self.log.error("the pilot cannot start", error=str(exc))
            raise SystemExit(1) from None
        self.inputs = Inputs()
        self.stats = PilotMetrics(self.metrics, lambda: len(self.inputs.workloads) if self.is_leader() else 0)
        # jwksUri key sets are fetched in the background; a changed key set (or fetch error) recompiles
        self.jwks = JwksResolver(JwksSettings.from_env(), lambda: self._on_change(CONFIG))
        self.pusher = Pusher(MeshConfig(outbound_traffic_policy=self.settings.outbound_traffic_policy,
                                        trace_sampling=self.settings.trace_sampling),
                             self.jwks.lookup, (self.jwks.begin, self.jwks.end))
        self.changed = asyncio.Event()
        self.config_changed = False
        self.pending_events: list[ConfigEvent] = []
        self.snapshot_sub: Any = None
        # leader, and its inputs caught up with the store it was elected in: only then does it publish or answer
        # snapshots. `_term` counts elections and depositions, so a takeover of a term that ended stops.
        self.serving = False
        self._term = 0
        self.compile_errors: dict[ResourceKey, str] = {}
        self.decoder = DecodeWorker(self.settings.config_limits)
        await self.decoder.start()
        self.api = ConfigApi(self.store, self.decoder.decode, self.settings.config_limits, self._not_in_effect,
                             self.settings.root_namespace)
        self.status = ProxyStatusRecorder(self.store, registered=lambda pid: pid in self.inputs.workloads,
                                          grace=3.0 * self.settings.lease_ttl, workload=self._registered_workload)
        self.election = LeaderElection(self.store, self.name, self.settings.instance,
                                       ttl=max(2, self.settings.lease_ttl),
                                       on_elected=self._on_elected, on_deposed=self._on_deposed)
        self.watcher = InputWatcher(self.store, self.inputs, self._on_change, self._on_config_event)
        q = subjects.QUEUE_PILOT
        await self.bus.serve(subjects.CONFIG_APPLY, self._apply, queue=q)
        await self.bus.serve(subjects.CONFIG_DELETE, self.api.delete, queue=q)
        await self.bus.serve(subjects.CONFIG_GET, self.api.get, queue=q)
        await self.bus.serve(subjects.CONFIG_VALIDATE, self.api.validate, queue=q)  # apply's checks, nothing stored
        await self.bus.listen(subjects.XDS_ACK, self._on_ack, queue=q)
        await self.bus.serve(subjects.XDS_STATUS, self._proxy_status, queue=q)
        self.spawn(self.watcher.run())
        await asyncio.wait_for(self.watcher.synced.wait(), timeout=30)
        self._compile_or_keep("compile failed")
        self.spawn(self._compile_loop())
        self.spawn(self.status.run())
        self.spawn(self.election.run())
        self.spawn(self._resync_loop(StaleWatch(self.resync_interval)))
        # With every registry replica down, no heartbeat refreshes a lease: hold them (runtime/lease_hold.py)
        # rather than push the removal of every healthy workload once they expire.
        ttl = self.settings.lease_ttl
        self.spawn(LeaseHold(self.bus, self.store, self.log, probe_subject=subjects.health_subject("registry"),
                             interval=min(1.0, max(0.2, ttl / 3)), grace=2.0 * ttl, nobody_is_down=True).run())

    def is_leader(self) -> bool:
        """Acting as leader: elected, lease valid by our clock, inputs caught up (health replies, metrics, and
        every publish: pushes, config events, resync nudges, snapshot replies)."""
        return self.serving and self.election.is_leader

    async def stop(self) -> None:
        await self.status.flush()
        await self.election.resign()
        await self.jwks.close()
        self.decoder.close()

    def _not_in_effect(self, kind: str, namespace: str, name: str) -> tuple[str, str] | None:
        key = (kind, namespace, name)
        if key in self.inputs.unreadable:
            return "Unreadable", self.inputs.unreadable[key]
        if key in self.compile_errors:
            return "CompileError", self.compile_errors[key]
        return None

    def _on_change(self, what: str) -> None:
        self.config_changed = self.config_changed or what == CONFIG
        self.changed.set()

    async def _apply(self, data: bytes) -> bytes:
        reply = await self.api.apply(data)
        self.stats.applied(reply)
        return reply

    async def _on_ack(self, data: bytes) -> None:
        await self.status.on_ack(data)  # raises on a malformed ACK: the bus logs and drops it
        self.stats.ack(decode(data, Ack))

    def _on_config_event(self, type_: str, key: ResourceKey, revision: int) -> None:
        self.stats.committed(revision)
        kind, namespace, name = key
        self.pending_events.append(ConfigEvent(type=type_, kind=kind, namespace=namespace, name=name,
                                               revision=revision))

    def _compile(self) -> Any:
        state = self.inputs.mesh_state(self.settings.domain_suffix, self.settings.trust_domain,
                                       self.settings.root_namespace)
        return self.pusher.recompile(state, self.inputs.revision)

    async def _compile_loop(self) -> None:
        while True:
            await self.changed.wait()
            await asyncio.sleep(DEBOUNCE_CONFIG if self.config_changed else DEBOUNCE_ENDPOINTS)
            self.changed.clear()
            self.config_changed = False
            events, self.pending_events = self.pending_events, []
            try:
                push = self._compile()
            except Exception as exc:  # a compiler bug must not stop pilot: keep the last good config
                error = _compile_failure(exc)
                self.log.exception("compile failed", changes=[f"{e.kind} {e.namespace}/{e.name}" for e in events])
                for event in events:
                    key = (event.kind, event.namespace, event.name)
                    if event.type != "DELETED":
                        self.compile_errors[key] = error
                    event.compiled, event.error = False, error
                if self.is_leader():
                    try:
                        for event in events:
                            await self.bus.publish(subjects.CONFIG_EVENTS, encode(event))
                    except BusError as error_sending:
                        self.log.error("config events not sent", error=str(error_sending))
                continue
            self.compile_errors.clear()
            if not self.is_leader():
                continue
            try:
                if push is not None:
                    await self.bus.publish(subjects.XDS_PUSH, encode(push))
                    self.stats.pushed(push)
                    self.log.info("pushed", seq=push.seq, version=push.version, clusters=len(push.clusters),
                                  routes=len(push.routes),
                                  removed=len(push.removed_clusters) + len(push.removed_routes))
                for event in events:
                    await self.bus.publish(subjects.CONFIG_EVENTS, encode(event))
            except BusError as exc:  # e.g. larger than max_payload: proxies see the gap and ask for a snapshot
                self.log.error("push not sent", error=str(exc))

    async def _resync_loop(self, watch: StaleWatch) -> None:
        """The leader wakes proxies that missed a push with an empty one (services/pilot/resync.py)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(watch.interval / 2)
            if not self.is_leader():
                watch.behind_since.clear()
                continue
            try:
                statuses = await self.status.stored()
                if not self.is_leader():  # deposed while reading, maybe elected again and not caught up yet
                    continue
                due = watch.needs_resync(statuses, self.pusher.pushed_version, loop.time(), set(self.inputs.workloads))
                if due:
                    push = self.pusher.nudge()
                    await self.bus.publish(subjects.XDS_PUSH, encode(push))
                    self.log.info("proxies behind the pushed version: empty push to resync them", seq=push.seq,
                                  version=push.version, proxies=due[:10], behind=len(due))
            except (StoreError, BusError) as exc:
                self.log.warning("resync check", error=str(exc))

    def _registered_workload(self, proxy_id: str) -> Workload | None:
        held = self.inputs.workloads.get(proxy_id)
        return held[0] if held is not None else None

    async def _proxy_status(self, data: bytes) -> bytes:
        """xds.status: every proxy's last ACK/NACK and the version pilot pushes now."""
        request = decode(data, ProxyStatusRequest)
        try:
            proxies = await self.status.stored()
        except StoreError as exc:
            return encode(ProxyStatusReply(ok=False, error=f"store unavailable: {exc}"))
        if request.namespace is not None:
            proxies = [p for p in proxies if p.namespace == request.namespace]
        return encode(status_reply(self.pusher, proxies, request.snapshot_for, request.host))

    async def _snapshot(self, data: bytes) -> bytes | None:
        decode(data, SnapshotRequest)
        if not self.is_leader():  # deposed (or lapsed by our clock) while still subscribed: the leader answers
            return None
        reply = self.pusher.snapshot_bytes()
        p = self.pusher
        self.stats.served_snapshot(bool(p.clusters), bool(p.routes), bool(p.security))
        return reply

    async def _on_elected(self) -> None:
        # in a task of its own: the election loop awaits this callback and must keep our lease alive meanwhile
        self._term += 1
        self.spawn(self._take_over(self._term))

    async def _take_over(self, term: int) -> None:
        """Start serving as leader once the inputs are at least as new as the store was when we were elected:
        re-list every prefix pilot compiles from (a linearizable read, so at or past the revision any push of
        the previous leader came from; our watches may lag it), compile, then answer snapshots and announce the
        new epoch. Until then nothing is published (is_leader() is False). A store that cannot be read is
        retried while we lead, logged at error: our lease is kept alive through the same etcd, so a replica that
        cannot read etcd loses its lease too and another takes over; the watches play no part in catching up,
        so a watch that never catches up cannot hold the leadership. A bus that refuses the subscription (its
        connection closed for good) makes us resign: another replica can serve."""
        delay = 0.1
        while True:
            try:
                revision = await self.watcher.relist()
                break
            except StoreError as exc:
                if term != self._term:
                    return
                self.log.error("elected but not serving yet: the store cannot be read", error=str(exc),
                               retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)
        if term != self._term:
            return
        self._compile_or_keep("compile on election failed")
        try:
            sub = await self.bus.serve(subjects.XDS_SNAPSHOT, self._snapshot)
        except BusError as exc:
            self.log.error("elected but cannot serve snapshots: resigning", error=str(exc))
            await self.election.resign()
            return
        if term != self._term:
            await sub.unsubscribe()
            return
        self.snapshot_sub, self.serving = sub, True
        self.log.info("leading: inputs caught up with the store", revision=revision)
        try:
            await self.bus.publish(subjects.XDS_PUSH, encode(self.pusher.new_epoch()))
        except BusError as exc:  # proxies learn of the new epoch from the next push or resync nudge instead
            self.log.error("new epoch not announced", error=str(exc))

    def _compile_or_keep(self, message: str) -> None:
        """Compile now; on a compiler failure keep the last good config and mark every resource with the error."""
        try:
            self._compile()
        except Exception as exc:  # a stored resource the compiler cannot handle must not stop pilot
            self.log.exception(message)
            error = _compile_failure(exc)
            self.compile_errors = {key: error for key in self.inputs.resources}

    async def _on_deposed(self) -> None:
        self._term += 1
        self.serving = False
        if self.snapshot_sub is not None:
            await self.snapshot_sub.unsubscribe()
            self.snapshot_sub = None


def _compile_failure(exc: Exception) -> str:
    """What `isthmus get` and config events say about changes that a failed compile left out."""
    return f"compiling the mesh with this change failed ({type(exc).__name__}: {exc}); proxies keep the last good config"

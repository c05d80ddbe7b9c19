"""Pilot: the config API (Istio's Galley) and config compilation and push (Istio's Pilot).

Every replica serves the config API (queue group "pilot"), keeps its inputs current from etcd and
compiles; only the leader publishes pushes and config events and answers snapshot requests, so
proxies see one sequence of pushes.
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
        try:
            self._compile()
        except Exception as exc:  # a stored resource the compiler cannot handle must not stop pilot
            self.log.exception("compile failed")
            error = _compile_failure(exc)
            self.compile_errors = {key: error for key in self.inputs.resources}
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
        return self.election.is_leader

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
                if self.election.is_leader:
                    try:
                        for event in events:
                            await self.bus.publish(subjects.CONFIG_EVENTS, encode(event))
                    except BusError as error_sending:
                        self.log.error("config events not sent", error=str(error_sending))
                continue
            self.compile_errors.clear()
            if not self.election.is_leader:
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
            if not self.election.is_leader:
                watch.behind_since.clear()
                continue
            try:
                due = watch.needs_resync(await self.status.stored(), self.pusher.pushed_version, loop.time(),
                                         set(self.inputs.workloads))
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

    async def _snapshot(self, data: bytes) -> bytes:
        decode(data, SnapshotRequest)
        reply = self.pusher.snapshot_bytes()
        p = self.pusher
        self.stats.served_snapshot(bool(p.clusters), bool(p.routes), bool(p.security))
        return reply

    async def _on_elected(self) -> None:
        self.snapshot_sub = await self.bus.serve(subjects.XDS_SNAPSHOT, self._snapshot)
        await self.bus.publish(subjects.XDS_PUSH, encode(self.pusher.new_epoch()))

    async def _on_deposed(self) -> None:
        if self.snapshot_sub is not None:
            await self.snapshot_sub.unsubscribe()
            self.snapshot_sub = None


def _compile_failure(exc: Exception) -> str:
    """What `isthmus get` and config events say about changes that a failed compile left out."""
    return f"compiling the mesh with this change failed ({type(exc).__name__}: {exc}); proxies keep the last good config"

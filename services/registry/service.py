"""The registry: workload registration and health, kept in etcd under leases.

A proxy registers its workload; the registry grants an etcd lease (TTL from the request or the
default) and stores the workload under it. Heartbeats refresh the lease and carry health; a
heartbeat for a lease etcd no longer knows answers "unknown lease", so the proxy registers again.
A proxy that dies stops heartbeating and its endpoint vanishes when the lease expires; while the registry
cannot reach the bus, it holds every lease itself instead (runtime/lease_hold.py: an outage of the bus is
not the death of every workload).

The leader watches the registry prefix and publishes EndpointEvents, so each change is announced
once however many replicas run. Request handlers are stateless (queue group "registry").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar

import msgspec

from proto import subjects
from proto.registry import (
    DeregisterRequest,
    EndpointEvent,
    Heartbeat,
    HeartbeatReply,
    RegisterReply,
    RegisterRequest,
    Workload,
    WorkloadListReply,
    WorkloadListRequest,
)
from runtime.bus import BusError, decode, encode, request_subject
from runtime.lease_hold import LeaseHold
from runtime.leader import LeaderElection
from runtime.metrics import IstioSum
from runtime.service import ServiceProcess
from runtime.store import REGISTRY_PREFIX, StoreError
from services.registry import ids
from services.registry.groups import bind
from services.registry.ids import workload_key

MAX_TTL = 300
REQUEST_CONCURRENCY = 64


class _Outcome(msgspec.Struct):
    ok: bool = False


_outcome = msgspec.json.Decoder(_Outcome)


def _not_own(namespace: str, service_account: str) -> str:
    """Why a request on an identity-scoped subject may not touch this workload ("" when it may, or when it
    came on a plain subject: a bus without lockdown)."""
    subject = request_subject()  # isthmus.registry.<verb>[.<namespace>.<service account, maybe dotted>]
    base = next((b for b in (subjects.REGISTRY_REGISTER, subjects.REGISTRY_HEARTBEAT, subjects.REGISTRY_DEREGISTER)
                 if subject.startswith(b + ".")), "")
    own = subjects.identity_of(subject, base) if base else None
    if own is None:
        return ""
    if own != (namespace, service_account):
        return (f"these credentials are for namespace {own[0]!r}, service account {own[1]!r}: they cannot "
                f"touch a workload of namespace {namespace!r}, service account {service_account!r}")
    return ""


def _counted(handler: Callable[[bytes], Awaitable[bytes]], ok: IstioSum,
             failed: IstioSum | None) -> Callable[[bytes], Awaitable[bytes]]:
    """`handler`, counting its replies by their `ok` (a request that raised is counted by neither)."""

    async def counted(data: bytes) -> bytes:
        reply = await handler(data)
        if _outcome.decode(reply).ok:
            ok.inc()
        elif failed is not None:
            failed.inc()
        return reply

    return counted


class RegistryService(ServiceProcess):
    name: ClassVar[str] = "registry"

    async def start(self) -> None:
        self._publisher: asyncio.Task[None] | None = None
        self.election = LeaderElection(self.store, self.name, self.settings.instance, ttl=max(2, self.settings.lease_ttl),
                                       on_elected=self._on_elected)
        q = subjects.QUEUE_REGISTRY
        # Istio's WorkloadEntry auto-registration metrics (pilot/pkg/autoregistration/controller.go)
        success = IstioSum("auto_registration_success_total", "Workloads registered.", registry=self.metrics)
        errors = IstioSum("auto_registration_errors_total", "Registrations refused or failed.", registry=self.metrics)
        unregister = IstioSum("auto_registration_unregister_total", "Workloads deregistered.", registry=self.metrics)
        register = _counted(self._register, success, errors)
        deregister = _counted(self._deregister, unregister, None)
        # each request waits on etcd round trips: handle many at once
        # plain subjects, and identity-scoped ones (<subject>.<namespace>.<service account>): on a locked-down
        # bus a proxy may publish only on its own identity's, and a request there must be about a workload
        # of that identity (proto/busauth.py)
        for subject, handler in ((subjects.REGISTRY_REGISTER, register),
                                 (subjects.REGISTRY_HEARTBEAT, self._heartbeat),
                                 (subjects.REGISTRY_DEREGISTER, deregister)):
            await self.bus.serve(subject, handler, queue=q, concurrency=REQUEST_CONCURRENCY)
            # `.>`: a service account is a DNS subdomain and may span tokens (proto/subjects.py identity_subject)
            await self.bus.serve(f"{subject}.*.>", handler, queue=q, concurrency=REQUEST_CONCURRENCY)
        # the operator's read of what is registered (`isthmus analyze`); proxies may not publish here
        await self.bus.serve(subjects.REGISTRY_LIST, self._list, queue=q)
        self.spawn(self.election.run())
        ttl = self.settings.lease_ttl
        # Probe every third of the TTL (1 s at most), so a lease is held before it can lapse after the last
        # heartbeat; a grace of two TTLs after the bus returns covers the proxies' reconnect and next heartbeat.
        self.lease_hold = LeaseHold(self.bus, self.store, self.log, probe_subject=subjects.health_subject(self.name),
                                    interval=min(1.0, max(0.2, ttl / 3)), grace=2.0 * ttl)
        self.spawn(self.lease_hold.run())

    def is_leader(self) -> bool:
        return self.election.is_leader

    async def stop(self) -> None:
        await self.election.resign()

    async def _register(self, data: bytes) -> bytes:
        request = decode(data, RegisterRequest)
        workload = request.workload
        problem = _invalid(workload) or _not_own(workload.namespace, workload.service_account)
        if problem:
            return encode(RegisterReply(ok=False, error=problem))
        ttl = min(MAX_TTL, max(1, request.ttl or self.settings.lease_ttl))
        try:
            workload, problem = await bind(self.store, workload)  # its WorkloadGroup's template, if it names one
            problem = problem or _invalid(workload)  # the template's labels count toward the limit too
            if problem:
                return encode(RegisterReply(ok=False, error=problem))
            # one transaction: the workload (of the identity it replaces, if any) and its id's claim (an id held
            # by another namespace or service is refused, naming the holder), compare-and-swap on both
            lease, problem = await ids.register(self.store, workload, ttl, _not_own)
        except (StoreError, ids.Contended) as exc:  # etcd away, or lost every race: no refusal, the sidecar retries
            return encode(RegisterReply(ok=False, error=str(exc), transient=True))
        if problem:
            self.log.warning("registration refused", workload=workload.id, service=workload.service,
                             namespace=workload.namespace, error=problem)
            return encode(RegisterReply(ok=False, error=problem))
        self.log.info("registered", workload=workload.id, service=workload.service, namespace=workload.namespace,
                      address=f"{workload.address}:{workload.inbound_port}", ttl=ttl)
        return encode(RegisterReply(ok=True, lease_id=lease, ttl=ttl))

    async def _heartbeat(self, data: bytes) -> bytes:
        beat = decode(data, Heartbeat)
        key = workload_key(beat.namespace, beat.service, beat.workload_id)
        try:
            entry = await self.store.get(key)  # whose it is, before its lease is kept alive
            if entry is None or entry.lease != beat.lease_id:
                return encode(HeartbeatReply(ok=False, error="unknown lease"))
            workload = decode(entry.value, Workload)
            problem = _not_own(workload.namespace, workload.service_account)
            if problem:
                return encode(HeartbeatReply(ok=False, error=problem))
            if await self.store.refresh(beat.lease_id) == 0:
                return encode(HeartbeatReply(ok=False, error="unknown lease"))
            if workload.healthy != beat.healthy:  # write only on a change of health
                workload.healthy = beat.healthy
                await self.store.put(key, encode(workload), beat.lease_id)
        except StoreError as exc:
            return encode(HeartbeatReply(ok=False, error=str(exc)))
        return encode(HeartbeatReply(ok=True))

    async def _deregister(self, data: bytes) -> bytes:
        request = decode(data, DeregisterRequest)
        try:
            entry, problem = await ids.deregister(self.store, request.namespace, request.service,
                                                  request.workload_id, _not_own, request.lease_id)
            if problem:
                return encode(HeartbeatReply(ok=False, error=problem))
            # the lease of the registration deleted, not the one the request names: naming another's lease id
            # would drop its registration (or a leader's key, or any leased key) with no check of whose it is
            if entry is not None and entry.lease:
                await self.store.revoke(entry.lease)
        except StoreError as exc:
            return encode(HeartbeatReply(ok=False, error=str(exc)))
        self.log.info("deregistered", workload=request.workload_id)
        return encode(HeartbeatReply(ok=True))

    async def _list(self, data: bytes) -> bytes:
        """The registered workloads (of one namespace, or all), at most `limit`, in key order."""
        request = decode(data, WorkloadListRequest)
        prefix = REGISTRY_PREFIX + (f"{request.namespace}/" if request.namespace else "")
        try:
            entries, revision = await self.store.list(prefix)
        except StoreError as exc:
            return encode(WorkloadListReply(ok=False, error=str(exc)))
        workloads: list[Workload] = []
        for entry in entries[:request.limit]:
            try:
                workloads.append(decode(entry.value, Workload))
            except msgspec.DecodeError:
                continue  # not written by us
        return encode(WorkloadListReply(ok=True, workloads=workloads, total=len(entries), revision=revision))

    async def _on_elected(self) -> None:
        if self._publisher is None or self._publisher.done():
            self._publisher = self.spawn(self._publish_events())
        self.spawn(self._backfill_ids())

    async def _backfill_ids(self) -> None:
        """Leader only, once per election: claim the ids of registrations older than the id index (ids.py)."""
        try:
            done = await ids.backfill(self.store)
        except StoreError as exc:  # the next election tries again; until then such an id goes to whoever claims it
            self.log.warning("claiming registered workload ids failed", error=str(exc))
            return
        if done.claimed:
            self.log.info("claimed registered workload ids", count=done.claimed)
        if done.removed:  # their sidecars register again and are refused, naming the holder
            self.log.warning("deleted registrations of ids another registration holds", keys=done.removed[:20],
                             count=len(done.removed))

    async def _publish_events(self) -> None:
        """Leader only: turn etcd changes under the registry prefix into EndpointEvents."""
        while self.election.is_leader:
            try:
                _, revision = await self.store.list(REGISTRY_PREFIX)
                async for change in self.store.watch(REGISTRY_PREFIX, revision + 1):
                    if not self.election.is_leader:
                        return
                    namespace, service, workload_id = change.entry.key[len(REGISTRY_PREFIX):].split("/", 2)
                    if change.deleted:
                        event = EndpointEvent(type="DELETED", namespace=namespace, service=service,
                                              workload_id=workload_id, revision=change.entry.mod_revision)
                    else:
                        created = change.entry.create_revision == change.entry.mod_revision
                        event = EndpointEvent(type="ADDED" if created else "MODIFIED", namespace=namespace,
                                              service=service, workload_id=workload_id,
                                              revision=change.entry.mod_revision,
                                              workload=decode(change.entry.value, Workload))
                    await self.bus.publish(subjects.REGISTRY_EVENTS, encode(event))
            except (StoreError, ValueError, BusError) as exc:  # BusError: an event not sent (the bus away)
                self.log.warning("registry watch restarting", error=str(exc))
                await asyncio.sleep(0.5)


MAX_LABELS = 64  # labels (and opaque TCP ports) per workload: a registration is stored and pushed to every proxy


def _invalid(workload: Workload) -> str:
    if not workload.id or not workload.service or not workload.namespace:
        return "workload id, service and namespace are required"
    for part in (workload.id, workload.service, workload.namespace):
        if "/" in part:
            return f"{part!r} must not contain '/'"
    if not (0 < workload.inbound_port < 65536 and 0 < workload.service_port < 65536):
        return "ports must be 1-65535"
    if len(workload.labels) > MAX_LABELS:
        return f"{len(workload.labels)} labels, more than {MAX_LABELS}"
    for key, value in workload.labels.items():
        prefix, _, name = key.rpartition("/")
        if len(prefix) > 253 or not 0 < len(name) <= 63 or len(value) > 63:
            return (f"label {key[:80]!r}: Kubernetes' label limits apply (name 1-63 characters with an optional "
                    "prefix of up to 253, value up to 63)")
    for field, text in (("id", workload.id), ("service", workload.service), ("namespace", workload.namespace),
                        ("address", workload.address), ("service_account", workload.service_account),
                        ("locality", workload.locality), ("workload_name", workload.workload_name),
                        ("cluster", workload.cluster), ("workload_group", workload.workload_group),
                        ("instance", workload.instance)):
        if len(text) > 253:
            return f"{field} is {len(text)} characters, more than 253"
    if len(workload.tcp_ports) > MAX_LABELS:
        return f"{len(workload.tcp_ports)} TCP ports, more than {MAX_LABELS}"
    if len(workload.app_ports) > MAX_LABELS + 1:  # the HTTP service port and each opaque TCP one
        return f"{len(workload.app_ports)} app ports, more than {MAX_LABELS + 1}"
    if not all(0 < port < 65536 for pair in workload.app_ports.items() for port in pair):
        return "app ports must be 1-65535"
    if len(workload.gateway_ports) > MAX_LABELS:  # a gateway (`isthmus gateway run`): Gateway port -> listen port
        return f"{len(workload.gateway_ports)} gateway ports, more than {MAX_LABELS}"
    if not all(0 < port < 65536 for pair in workload.gateway_ports.items() for port in pair):
        return "gateway ports must be 1-65535"
    return ""

"""Registers this workload with the registry and keeps its lease alive with heartbeats that carry
the app's health: by default a TCP connect probe of the app's port; for a workload bound to a WorkloadGroup
with a probe (pushed by pilot: set_probe), that probe's state (proxy/control/probe.py), the default check
replaced. Registers again when the registry says the lease is gone (expired while the bus was away, or etcd
was reset)."""

from __future__ import annotations

import asyncio
import random

from proto import subjects
from proto.registry import DeregisterRequest, Heartbeat, HeartbeatReply, RegisterReply, RegisterRequest, Workload
from proto.workload_group import Probe
from proxy.control.probe import ProbeRunner
from runtime.bus import Bus, BusError
from runtime.log import get_logger

log = get_logger("proxy.registration")

REFUSED_BACKOFF_MAX = 30.0  # seconds between tries once the registry refused us: it will until we change


class RegistrationRefused(Exception):
    """The registry answered and said no (a bad label, name or TTL; the workload id registered by another
    namespace or service): not a bus problem, so it is logged as what it is, at error level on every try, kept
    for /ready (`refused`), and retried slowly (an operator must change the workload's flags, or the other
    registration must end)."""


class RegistryUnavailable(Exception):
    """The registry answered that it cannot reach its store (RegisterReply.transient): no refusal, so it is
    retried as an unreachable registry is, and /ready is not told the registry refuses us."""


async def probe_tcp(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class Registration:
    def __init__(self, workload: Workload, app_host: str, app_port: int, ttl: int | None = None,
                 probe_interval: float = 1.0) -> None:
        self.workload = workload
        self.app_host = app_host
        self.app_port = app_port
        self.ttl = ttl
        self.probe_interval = probe_interval
        self.bus: Bus | None = None
        self.lease_id = 0
        self.granted_ttl = 0
        self.refused = ""  # the registry's reason while it refuses our registration ("": not refused)
        self.probe: ProbeRunner | None = None  # the WorkloadGroup's probe, while one is pushed
        self._probe_task: asyncio.Task[None] | None = None

    def set_probe(self, probe: Probe | None) -> None:
        """Run `probe` (None: back to the TCP check of the app's port); the same probe again changes nothing,
        a changed one starts over (its initial delay, undefined state: unhealthy until it passes)."""
        current = self.probe.probe if self.probe is not None else None
        if probe == current:
            return
        if self._probe_task is not None:
            self._probe_task.cancel()
            self._probe_task = None
        self.probe = None
        if probe is not None:
            self.probe = ProbeRunner(probe, self.app_host)
            self._probe_task = asyncio.get_running_loop().create_task(self.probe.run())
        log.info("health check", probe=probe.source if probe is not None else None,
                 kind=probe.kind if probe is not None else "tcp app port")

    async def check(self) -> bool:
        """The health to report now."""
        if self.probe is not None:
            return self.probe.healthy
        return await probe_tcp(self.app_host, self.app_port)

    def _subject(self, base: str) -> str:
        """The identity-scoped subject: the only registry subjects our bus credentials may publish on."""
        return subjects.identity_subject(base, self.workload.namespace, self.workload.service_account)

    async def run(self, bus: Bus) -> None:
        self.bus = bus
        refused_wait = 1.0
        while True:
            try:
                if not self.lease_id:
                    await self._register()
                refused_wait = 1.0
                await asyncio.sleep(self._beat_interval())
                await self._heartbeat()
            except RegistrationRefused as exc:
                log.error("registration refused", workload=self.workload.id, error=str(exc), retry_in_s=refused_wait)
                await asyncio.sleep(refused_wait * random.uniform(0.75, 1.25))
                refused_wait = min(refused_wait * 2, REFUSED_BACKOFF_MAX)
            except RegistryUnavailable as exc:
                log.warning("registry cannot reach its store", error=str(exc))
                await asyncio.sleep(random.uniform(0.25, 1.0))
            except BusError as exc:
                log.warning("registry unreachable", error=str(exc))
                await asyncio.sleep(random.uniform(0.25, 1.0))  # jitter: a restarted registry is not stampeded

    def _beat_interval(self) -> float:
        ttl = self.granted_ttl or 5
        return min(self.probe_interval, ttl / 3)

    async def _register(self) -> None:
        assert self.bus is not None
        self.workload.healthy = await self.check()
        reply = await self.bus.call(self._subject(subjects.REGISTRY_REGISTER), RegisterRequest(workload=self.workload, ttl=self.ttl),
                                    RegisterReply)
        if not reply.ok and reply.transient:
            raise RegistryUnavailable(reply.error)
        if not reply.ok:
            self.refused = reply.error or "no reason given by the registry"
            raise RegistrationRefused(self.refused)
        self.refused = ""
        self.lease_id, self.granted_ttl = reply.lease_id, reply.ttl
        log.info("registered", workload=self.workload.id, lease=self.lease_id, ttl=reply.ttl,
                 healthy=self.workload.healthy)

    async def _heartbeat(self) -> None:
        assert self.bus is not None
        healthy = await self.check()
        if healthy != self.workload.healthy:
            log.info("app health changed", healthy=healthy)
        self.workload.healthy = healthy
        beat = Heartbeat(workload_id=self.workload.id, namespace=self.workload.namespace,
                         service=self.workload.service, lease_id=self.lease_id, healthy=healthy)
        reply = await self.bus.call(self._subject(subjects.REGISTRY_HEARTBEAT), beat, HeartbeatReply, timeout=2.0)
        if not reply.ok:
            log.warning("lease lost, registering again", error=reply.error)
            self.lease_id = 0

    async def deregister(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
        if self.bus is None or not self.lease_id:
            return
        request = DeregisterRequest(workload_id=self.workload.id, namespace=self.workload.namespace,
                                    service=self.workload.service, lease_id=self.lease_id)
        try:
            await self.bus.call(self._subject(subjects.REGISTRY_DEREGISTER), request, HeartbeatReply, timeout=2.0)
        except BusError:
            pass  # the lease expires on its own

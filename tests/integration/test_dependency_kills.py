"""A dependency SIGKILLed under running services (real nats-server, etcd, registry, pilot and sidecars): the
services live through it, say what happened, and carry on once it is back. Own module, so its own control plane:
it kills the plane's bus and store."""

from __future__ import annotations

import asyncio

import pytest

from proto import subjects
from proto.registry import RegisterReply, RegisterRequest, Workload
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane, apply, eventually
from tests.integration.httpclient import Backend, Client
from tests.integration.test_static_stability import VS

pytestmark = pytest.mark.asyncio


async def test_the_pilot_leader_keeps_pushing_after_a_killed_bus_returns(mesh: ControlPlane) -> None:
    """nats-server SIGKILLed for 2 s under a running pilot (no restart of pilot): once the bus is back, a change
    applied then reaches the sidecars from the same pilot process."""
    v1, v2 = await Backend("v1").start(), await Backend("v2").start()
    try:
        for backend, version in ((v1, "v1"), (v2, "v2")):
            await mesh.proxy("reviews", backend.port, 9080, "stable", f"version={version}").ready()
        front = await mesh.proxy("frontend", v1.port, 9080, "stable").ready()
        first = await apply(mesh, VS.format(subset="v1"))
        await front.holds(first["revision"])
        pilot = mesh.services["pilot"].popen
        assert pilot is not None
        mesh.nats.kill()
        await asyncio.sleep(2.0)
        mesh.nats.start()
        await mesh.nats.wait_ready_async(15)

        async def applied() -> dict | None:
            try:
                reply = await apply(mesh, VS.format(subset="v2"))
            except Exception:  # noqa: BLE001 - the config API reconnecting to the bus: asked again
                return None
            return reply if reply.get("ok") else None

        second = await eventually(applied, timeout=30, interval=0.5)
        await front.holds(second["revision"], timeout=30)
        client = Client("127.0.0.1", front.outbound_port)
        try:
            async def only_v2() -> bool:
                return {(await client.request("GET", "http://reviews:9080/")).text for _ in range(10)} == {"v2"}

            await eventually(only_v2, timeout=20, interval=0.5)
        finally:
            await client.close()
        assert pilot.poll() is None and mesh.services["pilot"].popen is pilot  # the same pilot, still running
    finally:
        await v1.stop()
        await v2.stop()


async def test_a_sidecar_registering_while_etcd_is_killed_is_told_transient_and_stays_ready(
        mesh: ControlPlane) -> None:
    """etcd SIGKILLed under a running registry: a registration is answered transient (not refused), the sidecar
    whose heartbeat fails registers again and again without calling it a refusal, its /ready stays 200; once
    etcd is back, its registration is stored again, and the registry never restarted. Last: it kills etcd."""
    app = await Backend("kept").start()
    try:
        sidecar = await mesh.proxy("kept", app.port, 9080, "killns", "app=kept").ready()
        # connected now: the auth service checks a new connection's credentials in etcd
        bus = await busmod.connect(mesh.nats_url, "killns-other", auth=await mesh.proxy_auth("killns"))
        registry = mesh.services["registry"].popen
        assert registry is not None
        mesh.etcd.kill()
        try:
            workload = Workload(id="while-down", service="other", namespace="killns", address="127.0.0.1")
            reply = await bus.call(subjects.identity_subject(subjects.REGISTRY_REGISTER, "killns", "default"),
                                   RegisterRequest(workload=workload, ttl=60), RegisterReply, timeout=10)
            assert not reply.ok and reply.transient, reply

            def tried_again() -> bool:
                return any(line.get("event") == "registry cannot reach its store" for line in sidecar.log_lines())

            await eventually(tried_again, timeout=15)
            status, body = sidecar.admin("/ready")
            assert status == 200, (status, body)
            assert sidecar.config_dump()["proxy"]["registration_refused"] == ""
            assert not any(line.get("event") == "registration refused" for line in sidecar.log_lines())
        finally:
            await bus.close()
            mesh.etcd.start()
            await mesh.etcd.wait_ready_async(15)

        store = await mesh.store()
        try:
            async def stored_again() -> bool:
                entries, _ = await store.list("/isthmus/registry/killns/kept/")
                return len(entries) == 1 and entries[0].lease != 0

            await eventually(stored_again, timeout=30, interval=0.5)
        finally:
            await store.close()
        assert sidecar.admin("/ready")[0] == 200
        assert registry.poll() is None and mesh.services["registry"].popen is registry
    finally:
        await app.stop()

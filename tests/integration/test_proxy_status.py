"""`isthmus proxy-status`: pilot's record of each proxy's ACKs and NACKs, read through pilot, and
status keys that do not outlive their proxy. Real bus, etcd, pilot, registry and sidecar."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from runtime.store import CONFIG_PREFIX, REGISTRY_PREFIX, STATUS_PREFIX
from tests.integration.conftest import LEASE_TTL, ControlPlane, eventually
from tests.integration.httpclient import Backend

pytestmark = pytest.mark.asyncio


def proxy_status(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, "proxy-status", *args],
                          capture_output=True, text=True, timeout=60)


def row(result: subprocess.CompletedProcess[str], proxy_id: str) -> list[str]:
    return next(line.split() for line in result.stdout.splitlines() if line.startswith(proxy_id))


async def test_proxy_status_shows_synced_then_rejected_with_the_proxys_reason(mesh: ControlPlane) -> None:
    backend = await Backend("ps").start()
    sidecar = await mesh.proxy("ps-app", backend.port, 9080, "ps").ready()
    proxy_id = sidecar.config_dump()["proxy"]["id"]
    store = await mesh.store()
    try:
        async def state(want: str) -> list[str] | None:
            result = await asyncio.to_thread(proxy_status, mesh, "-n", "ps")
            assert result.returncode == 0, result.stderr
            cells = row(result, proxy_id) if proxy_id in result.stdout else None
            return cells if cells and cells[3] == want else None

        cells = await eventually(lambda: state("SYNCED"), timeout=15, interval=0.5)
        assert cells[1:3] == ["ps", "ps-app"]
        # A policy the proxy refuses, written around the config API's validation (as an older pilot's
        # compiler could produce): the proxy NACKs and proxy-status says so, with the proxy's reason.
        bad = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "ps-bad", "namespace": "ps"},
               "spec": {"host": "ps-app", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": -1}}}}}
        await store.put(f"{CONFIG_PREFIX}DestinationRule/ps/ps-bad", json.dumps(bad).encode())
        await eventually(lambda: state("REJECTED"), timeout=15, interval=0.5)
        result = await asyncio.to_thread(proxy_status, mesh)
        assert f"Warning: {proxy_id} rejected version" in result.stderr
        assert "connection pool limits must be non-negative" in result.stderr, result.stderr
    finally:
        await store.delete(f"{CONFIG_PREFIX}DestinationRule/ps/ps-bad")
        await store.close()
        await backend.stop()


async def test_a_departed_proxys_status_key_is_removed(mesh: ControlPlane) -> None:
    backend = await Backend("gone").start()
    sidecar = await mesh.proxy("gone-app", backend.port, 9080, "gone").ready()
    proxy_id = sidecar.config_dump()["proxy"]["id"]
    store = await mesh.store()
    try:
        await eventually(lambda: store.get(f"{STATUS_PREFIX}{proxy_id}"), timeout=LEASE_TTL + 5)
        sidecar.process.stop()

        async def removed() -> bool:
            return await store.get(f"{STATUS_PREFIX}{proxy_id}") is None

        # its registration goes at once (deregister) or after the lease; the status after 3 lease TTLs
        await eventually(removed, timeout=3 * LEASE_TTL + 20, interval=0.5)
        result = await asyncio.to_thread(proxy_status, mesh, "-n", "gone")
        assert proxy_id not in result.stdout
    finally:
        await store.close()
        await backend.stop()


async def test_a_forged_ack_is_bounded_before_it_is_stored_or_shown(mesh: ControlPlane) -> None:
    """Any proxy can publish an ACK: pilot keeps 4096 characters of its error and drops one whose
    names are longer than a DNS name, so `isthmus proxy-status` never prints unbounded text."""
    from runtime import bus as busmod

    def ack(proxy_id: str, **fields: object) -> bytes:
        return json.dumps({"proxy_id": proxy_id, "epoch": "e", "seq": 1, "version": 1, "ok": False,
                           "error": "x" * 100_000, "service": "forged", "namespace": "forged", **fields}).encode()

    store = await mesh.store()  # only registered proxies' ACKs are shown: forged-kept is one
    try:
        await store.put(f"{REGISTRY_PREFIX}forged/forged/forged-kept",
                        json.dumps({"id": "forged-kept", "service": "forged", "namespace": "forged"}).encode())
    finally:
        await store.close()
    bus = await mesh.bus("test-forged-ack", "proxy")
    try:
        await bus.publish("isthmus.xds.ack", ack("forged-kept"))
        for name, fields in (("forged-long-service", {"service": "s" * 254}),
                             ("forged-long-ns", {"namespace": "n" * 254}),
                             ("forged-ctl", {"epoch": "a\x1b[2Jb"}),
                             ("forged-seq", {"seq": 2**63})):
            await bus.publish("isthmus.xds.ack", ack(name, **fields))
        await bus.publish("isthmus.xds.ack", ack("p" * 254))
        await bus.flush()
    finally:
        await bus.close()

    async def shown() -> subprocess.CompletedProcess[str] | None:
        result = await asyncio.to_thread(proxy_status, mesh, "-n", "forged")
        return result if "forged-kept" in result.stdout else None

    result = await eventually(shown, timeout=15, interval=0.5)
    [warning] = [line for line in result.stderr.splitlines() if "forged-kept" in line]
    assert warning.endswith(": " + "x" * 4096)
    for name in ("forged-long-service", "forged-long-ns", "forged-ctl", "forged-seq", "p" * 254):
        assert name not in result.stdout + result.stderr


async def test_acks_of_unregistered_proxies_are_not_stored_and_wait_bounded(mesh: ControlPlane) -> None:
    """Found by an attack: any proxy may publish an ACK with any proxy_id, and pilot stored each: one proxy wrote
    674,000 status keys in 5 s, more than one etcd list may return, and `isthmus proxy-status` (and the sweep
    that would have removed them) failed from then on. Now only registered proxies' ACKs are stored; ACKs of
    proxies not registered yet wait in memory (at most MAX_WAITING, for the sweep's grace) until they register."""
    from runtime import bus as busmod
    from services.pilot.proxy_status import MAX_WAITING

    def ack(proxy_id: str) -> bytes:
        return json.dumps({"proxy_id": proxy_id, "epoch": "e", "seq": 1, "version": 1, "service": "flood",
                           "namespace": "flood"}).encode()

    bus = await mesh.bus("test-ack-flood", "proxy")
    try:
        await bus.publish("isthmus.xds.ack", ack("flood-late"))  # waits: registers below
        for i in range(MAX_WAITING + 500):
            await bus.publish("isthmus.xds.ack", ack(f"flood-{i}"))
        await bus.flush()
    finally:
        await bus.close()
    store = await mesh.store()
    try:
        await store.put(f"{REGISTRY_PREFIX}flood/flood/flood-late",
                        json.dumps({"id": "flood-late", "service": "flood", "namespace": "flood"}).encode())
        await eventually(lambda: store.get(f"{STATUS_PREFIX}flood-late"), timeout=15)  # admitted once registered
        entries, _ = await store.list(f"{STATUS_PREFIX}flood-")
        assert [e.key for e in entries] == [f"{STATUS_PREFIX}flood-late"]  # none of the unregistered ones
    finally:
        await store.delete(f"{REGISTRY_PREFIX}flood/flood/flood-late")
        await store.close()
    result = await asyncio.to_thread(proxy_status, mesh, "-n", "flood")
    assert result.returncode == 0 and "flood-late" in result.stdout and "flood-1 " not in result.stdout

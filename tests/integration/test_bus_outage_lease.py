"""A bus outage longer than the lease TTL must not turn, once the bus is back, into a window where healthy
workloads are dropped from every proxy (503 "no healthy endpoint") until they register again: the registry
holds the leases while it cannot hear the bus (services/registry/lease_hold.py). Whether the server is gone
or hangs (SIGSTOP: connections stay open, nothing answers). And the hold ends: a workload that died during
the outage is still removed after it. Own module, so its own control plane: it stops the bus."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.integration.conftest import LEASE_TTL, ControlPlane, apply, eventually, fqdn
from tests.integration.httpclient import Backend, Client
from tests.integration.test_static_stability import VS

pytestmark = pytest.mark.asyncio


async def _statuses_for(client: Client, seconds: float) -> list[int]:
    """The status of a request to reviews every 50 ms for `seconds`; closes the client."""
    statuses = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        statuses.append((await client.request("GET", "http://reviews:9080/")).status)
        await asyncio.sleep(0.05)
    await client.close()
    return statuses


def _outage(mesh: ControlPlane, kind: str) -> None:
    if kind == "stopped":
        mesh.nats.stop()
    else:
        mesh.nats.popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]


def _recover(mesh: ControlPlane, kind: str) -> None:
    if kind == "stopped":
        mesh.nats.start()
    else:
        mesh.nats.popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    mesh.nats.wait_ready(15)


@pytest.mark.parametrize("kind", ["stopped", "hung"])
async def test_traffic_keeps_flowing_after_a_bus_outage_longer_than_the_lease_ttl(mesh: ControlPlane,
                                                                                   kind: str) -> None:
    v1 = await Backend("v1").start()
    await mesh.proxy("reviews", v1.port, 9080, "stable", "version=v1").ready()
    front = await mesh.proxy("frontend", v1.port, 9080, "stable").ready()
    reply = await apply(mesh, VS.format(subset="v1"))
    await eventually(lambda: front.config_dump()["version"] >= reply["revision"])
    client = Client("127.0.0.1", front.outbound_port)
    assert (await client.request("GET", "http://reviews:9080/")).text == "v1"

    _outage(mesh, kind)
    try:
        await asyncio.sleep(3 * LEASE_TTL)
        assert (await client.request("GET", "http://reviews:9080/")).status == 200  # bus away: last config serves
    finally:
        _recover(mesh, kind)

    statuses = await _statuses_for(client, 4 * LEASE_TTL)
    assert set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} requests after the bus came back got 503"


async def test_a_workload_that_dies_during_the_outage_is_removed_after_it(mesh: ControlPlane) -> None:
    v1 = await Backend("v1").start()
    reviews = await mesh.proxy("reviews", v1.port, 9080, "stable", "version=v1").ready()
    front = await mesh.proxy("frontend", v1.port, 9080, "stable").ready()
    host = fqdn("reviews", "stable")
    await eventually(lambda: front.endpoints(host) == 1)

    mesh.nats.stop()
    try:
        reviews.process.kill()
        await asyncio.sleep(2 * LEASE_TTL)
    finally:
        mesh.nats.start()
        mesh.nats.wait_ready(15)
    assert front.endpoints(host) == 1  # held through the outage (and for a grace after it)
    # gone once the grace (2 TTLs) and the lease's own TTL have passed: the hold does not keep it forever
    await eventually(lambda: front.endpoints(host) == 0, timeout=3 * LEASE_TTL + 15)


async def test_traffic_keeps_flowing_while_every_registry_is_down_longer_than_the_lease_ttl(mesh: ControlPlane) -> None:
    """The sibling outage: the bus is up but no registry replica answers heartbeats; pilot holds the leases."""
    v1 = await Backend("v1").start()
    await mesh.proxy("reviews", v1.port, 9080, "stable", "version=v1").ready()
    front = await mesh.proxy("frontend", v1.port, 9080, "stable").ready()
    host = fqdn("reviews", "stable")
    await eventually(lambda: front.endpoints(host) == 1)
    client = Client("127.0.0.1", front.outbound_port)
    mesh.services["registry"].stop()
    try:
        await asyncio.sleep(3 * LEASE_TTL)
        assert front.endpoints(host) == 1
    finally:
        await mesh.start_service_async("registry")
    statuses = await _statuses_for(client, 4 * LEASE_TTL)
    assert set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} requests after the registry came back got 503"

"""Attack10: a bus outage longer than the lease TTL must not turn, once the bus is back, into a window where
healthy workloads are dropped from every proxy (503 "no healthy endpoint") until they register again.
Own module, so its own control plane: it stops the bus."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import LEASE_TTL, ControlPlane, apply, eventually
from tests.integration.httpclient import Backend, Client
from tests.integration.test_static_stability import VS

pytestmark = pytest.mark.asyncio


async def test_traffic_keeps_flowing_after_a_bus_outage_longer_than_the_lease_ttl(mesh: ControlPlane) -> None:
    v1 = await Backend("v1").start()
    await mesh.proxy("reviews", v1.port, 9080, "stable", "version=v1").ready()
    front = await mesh.proxy("frontend", v1.port, 9080, "stable").ready()
    reply = await apply(mesh, VS.format(subset="v1"))
    await eventually(lambda: front.config_dump()["version"] >= reply["revision"])
    client = Client("127.0.0.1", front.outbound_port)
    assert (await client.request("GET", "http://reviews:9080/")).text == "v1"

    mesh.nats.stop()
    await asyncio.sleep(3 * LEASE_TTL)
    assert (await client.request("GET", "http://reviews:9080/")).status == 200  # bus away: last config serves
    mesh.nats.start()
    mesh.nats.wait_ready(15)

    statuses = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 4 * LEASE_TTL
    while loop.time() < end:
        statuses.append((await client.request("GET", "http://reviews:9080/")).status)
        await asyncio.sleep(0.05)
    await client.close()
    assert set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} requests after the bus came back got 503"

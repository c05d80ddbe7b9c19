"""Pilot leader failover with real processes (runtime/leader.py): a second pilot takes over when the
leader freezes (SIGSTOP), pushes in a new epoch, and the old leader, resumed, publishes nothing more."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from isthmus.launch import free_port, service_process
from proto import subjects
from proto.xds import Push
from runtime import bus as busmod
from runtime.bus import decode
from tests.integration.conftest import LEASE_TTL, ControlPlane, eventually
from tests.integration.httpclient import Backend

pytestmark = pytest.mark.asyncio


async def test_a_frozen_leader_is_replaced_within_the_ttl_and_stops_acting_when_it_resumes(
        mesh: ControlPlane) -> None:
    old = mesh.services["pilot"]
    spare = service_process("pilot", mesh.nats_url, mesh.etcd_url, mesh.state_dir, ["--lease-ttl", str(LEASE_TTL)],
                            credentials=mesh.creds)
    spare.log_path = mesh.state_dir / "logs" / "pilot-spare.log"
    spare.start()
    backend = await Backend("v1").start()
    bus = await mesh.bus("test-failover", "proxy")  # it watches pushes, as a proxy does
    pushes: list[tuple[float, str]] = []

    async def seen(data: bytes) -> None:
        pushes.append((time.monotonic(), decode(data, Push).epoch))

    try:
        await bus.listen(subjects.XDS_PUSH, seen)
        first = await mesh.proxy("reviews", backend.port, namespace="failover").ready()
        epoch = first.config_dump()["epoch"]
        await asyncio.sleep(1.0)  # the spare is up and campaigning: it must not lead while the leader lives
        assert {e for _, e in pushes} <= {epoch}, pushes

        old.popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        frozen = time.monotonic()
        # the spare's term starts with a push in a new epoch, after the frozen leader's lease runs out
        took = (await eventually(lambda: next((t for t, e in pushes if e != epoch), None), LEASE_TTL * 3 + 5)) - frozen
        assert LEASE_TTL / 2 <= took <= LEASE_TTL * 2 + 3, took
        new_epoch = next(e for _, e in pushes if e != epoch)
        # a change while the old leader is frozen: the new one pushes it
        second = await mesh.proxy("reviews", free_port(), namespace="failover").ready()
        assert second.config_dump()["epoch"] == new_epoch

        old.popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        resumed = time.monotonic()
        await asyncio.sleep(LEASE_TTL + 1.0)  # its watch delivers what changed meanwhile; it compiles
        stale = [(round(t - resumed, 2), e) for t, e in pushes if t >= resumed and e != new_epoch]
        assert stale == [], stale  # nothing from the old leader's term after it resumed
        await eventually(lambda: first.config_dump()["epoch"] == new_epoch)
    finally:
        old.popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        await bus.close()
        await backend.stop()
        spare.stop(5)

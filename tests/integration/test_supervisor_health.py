"""`isthmus up`'s supervisor replaces a service that stops answering its health subject (here: paused
with SIGSTOP, so it neither exits nor answers), with the real bus, etcd and service process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from isthmus.launch import Supervisor, bus_health_probe, service_process, start_etcd, start_nats, wait_ready
from runtime import bus as busmod

pytestmark = pytest.mark.asyncio


async def test_a_paused_service_is_killed_and_restarted(tmp_path: Path) -> None:
    nats = start_nats(tmp_path)
    etcd = start_etcd(tmp_path, unsafe_no_fsync=True)
    reports: list[str] = []
    supervisor = Supervisor(report=reports.append, backoff_initial=0.1, health_interval=0.5, health_misses=3)
    bus = await busmod.connect(nats.url or "", "test-supervisor")
    runner: asyncio.Task[None] | None = None
    try:
        proc = supervisor.add(service_process("registry", nats.url or "", etcd.url or "", tmp_path))
        await wait_ready(bus, "registry", 30, process=proc)
        supervisor.watch_health(proc, bus_health_probe(bus, "registry", timeout=0.5))
        runner = asyncio.ensure_future(supervisor.run(interval=0.1))
        first = proc.pid
        assert first is not None
        await asyncio.sleep(1.5)  # healthy: answered checks, nothing happens
        assert proc.pid == first and not reports
        os.kill(first, signal.SIGSTOP)
        paused = time.monotonic()
        deadline = paused + 60
        while proc.pid == first and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert proc.pid != first, f"not replaced within 60s: {reports}"
        reply = await wait_ready(bus, "registry", 30, process=proc)
        assert reply.ready and reply.instance.endswith(str(proc.pid))
        assert any("registry (pid" in r and "did not answer 3 health checks in a row" in r for r in reports), reports
        assert any("restarted" in r for r in reports), reports
        assert time.monotonic() - paused > 1.0  # three misses half a second apart, not the first blip
    finally:
        if runner is not None:
            supervisor.stopping = True
            runner.cancel()
        await bus.close()
        supervisor.stop_all(timeout=3)
        etcd.stop()
        nats.stop()

"""`isthmus version` and `isthmus admin log`: every replica answers on the real bus; only the operator may
change a service's log level."""

from __future__ import annotations

import asyncio
import json

import pytest

from runtime.version import VERSION
from tests.integration.conftest import ControlPlane, eventually
from tests.integration.httpclient import Backend
from tests.integration.test_bus_lockdown import Violations, connect_as
from tests.integration.test_proxy_config import run

pytestmark = pytest.mark.asyncio


async def test_version_reports_client_services_and_proxies(mesh: ControlPlane) -> None:
    backend = await Backend("ver").start()
    await mesh.proxy("ver-app", backend.port, 9080, "ver").ready()
    try:
        async def counted() -> dict | None:
            result = await run(mesh, "version", "-o", "json")
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            return report if report["data_plane"].get("proxies") else None

        report = await eventually(counted, timeout=20, interval=0.5)
        assert report["client"]["version"] == VERSION
        assert [r["version"] for r in report["control_plane"]["pilot"]] == [VERSION]
        assert report["control_plane"]["pilot"][0]["leader"] is True
        assert report["control_plane"]["telemetry"] == []  # not started in this plane
        assert report["data_plane"]["versions"] == {VERSION: report["data_plane"]["proxies"]}
        short = await run(mesh, "version", "--short")
        assert short.stdout.splitlines()[0] == f"client version: {VERSION}"
        assert "data plane version: " + VERSION in short.stdout
    finally:
        await backend.stop()


async def test_admin_log_changes_every_replicas_level_at_runtime(mesh: ControlPlane) -> None:
    changed = await run(mesh, "admin", "log", "registry", "--level", "debug")
    assert changed.returncode == 0, changed.stderr
    row = changed.stdout.splitlines()[1].split()
    assert row[1:] == ["debug", "info", "ok"], changed.stdout
    log = mesh.state_dir / "logs" / "registry.log"
    before = log.stat().st_size if log.exists() else 0
    shown = await run(mesh, "admin", "log", "registry")
    assert shown.stdout.splitlines()[1].split()[1] == "debug"
    back = await run(mesh, "admin", "log", "registry", "--level", "info")
    assert back.stdout.splitlines()[1].split()[1:3] == ["info", "debug"]
    if log.exists():  # the change itself is logged, as a warning, in the replica's own log
        await asyncio.sleep(0.2)
        assert "log level changed by the operator" in log.read_text()[max(0, before - 2000):]


async def test_a_proxy_credential_cannot_change_a_services_log_level(mesh: ControlPlane) -> None:
    creds = await mesh.issue_credentials("ver", "default")
    errors = Violations()
    client = await connect_as(mesh, creds, errors)
    try:
        await client.publish("isthmus.admin.log.pilot", b'{"level": "debug"}')
        await errors.seen('permissions violation for publish to "isthmus.admin.log.pilot"')
    finally:
        await client.close()
    shown = await run(mesh, "admin", "log", "pilot")
    assert shown.stdout.splitlines()[1].split()[1] == "info"

"""`isthmus x describe service` and `isthmus bug-report` against the real control plane and a sidecar: what
applies to a service in one screen, and an archive of everything that holds none of the mesh's secrets."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.integration.conftest import ControlPlane, apply_ok, destination_rule, eventually, route_to
from tests.integration.httpclient import Backend
from tests.integration.test_proxy_config import run

pytestmark = pytest.mark.asyncio

POLICIES = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: db}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: db}
spec:
  selector: {matchLabels: {version: v1}}
  rules: [{from: [{source: {namespaces: [db]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: db}
spec:
  selector: {matchLabels: {version: v9}}
"""


async def test_describe_service_and_a_bug_report_without_secrets(mesh: ControlPlane, tmp_path: Path) -> None:
    backend = await Backend("db").start()
    sidecar = await mesh.proxy("db-app", backend.port, 9080, "db", labels="version=v1").ready()
    proxy_id = sidecar.config_dump()["proxy"]["id"]
    try:
        config = (destination_rule("db", ("v1", "v2")) + "\n---" + route_to("db", "v1")).replace("reviews", "db-app")
        await apply_ok(mesh, config + "\n---" + POLICIES, sidecar)

        described = await run(mesh, "x", "describe", "service", "db-app", "-n", "db")
        assert described.returncode == 0, described.stderr
        text = described.stdout
        assert "Service: db-app.db.svc.cluster.local" in text and "Endpoints: 1 (1 healthy)" in text, text
        assert "DestinationRule: db/db-app" in text and "Subset v2: version=v2" in text
        assert "VirtualService: db/db-app" in text and "db-app.db.svc.cluster.local|v1" in text
        assert "mTLS: STRICT (db/default)" in text
        assert "AuthorizationPolicy: db/readers (ALLOW, 1 rules)" in text and "elsewhere" not in text
        as_json = json.loads((await run(mesh, "x", "describe", "service", "db-app.db.svc.cluster.local",
                                        "-o", "json")).stdout)
        assert as_json["endpoints"][0]["health"] == "HEALTHY"

        token = (await run(mesh, "token", "create", "--namespace", "db", "--service-account", "default")).stdout.strip()
        assert len(token) > 16

        async def reported() -> bool:
            result = await run(mesh, "proxy-status", "-o", "json")
            return any(r["proxy"] == proxy_id and r["proxy_version"] for r in json.loads(result.stdout or "[]"))

        await eventually(reported, timeout=20, interval=0.5)
        # a log that leaked what it should not have: the report must still hold none of it
        (mesh.state_dir / "logs" / "leaky.log").write_text(
            f'{{"event": "connect", "url": "nats://operator:{mesh.operator.password}@127.0.0.1"}}\n'
            f"etcd said {mesh.creds.etcd_service} and token {token}\n"
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAbc\n-----END EC PRIVATE KEY-----\n")
        archive = tmp_path / "report.tar.gz"
        made = await run(mesh, "bug-report", "-o", str(archive), "--state-dir", str(mesh.state_dir), "--tail", "200")
        assert made.returncode == 0, made.stderr
        with tarfile.open(archive) as tar:
            members = {m.name.removeprefix("bug-report/"): tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                       for m in tar.getmembers()}
        assert {"config/VirtualService.json", "config/AuthorizationPolicy.json", "proxy-status.json",
                f"proxies/{proxy_id}.json", "logs/pilot.log", "logs/leaky.log", "MANIFEST"} <= set(members), sorted(members)
        assert "db-app.db.svc.cluster.local" in members[f"proxies/{proxy_id}.json"]
        everything = "\n".join(members.values())
        secrets = {"operator password": mesh.operator.password, "etcd service password": mesh.creds.etcd_service,
                   "etcd root password": mesh.creds.etcd_root, "bootstrap token": token,
                   **{f"{role} bus password": password for role, password in mesh.creds.bus.items()}}
        for what, secret in secrets.items():
            assert secret and secret not in everything, f"the {what} is in the bug report"
        assert "PRIVATE KEY-----" not in everything
    finally:
        await backend.stop()

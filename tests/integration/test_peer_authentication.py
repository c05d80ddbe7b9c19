"""PeerAuthentication end to end on the real bus and etcd: applied through the config API, resolved by pilot,
pushed to the running sidecars (no restart), and seen by clients as auto mTLS inputs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import nats
import pytest

from tests.integration.conftest import ControlPlane, apply_ok, eventually, fqdn
from tests.integration.httpclient import Backend

pytestmark = pytest.mark.asyncio

MESH_STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"""


def workload_disable(ns: str) -> str:
    return f"""
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {{name: fin, namespace: {ns}}}
spec:
  selector:
    matchLabels: {{app: fin}}
  mtls: {{mode: DISABLE}}
"""


def _pushed(pushes: list[dict], revision: int, *workloads: str) -> dict[str, dict] | None:
    """The security entries of the pushes at `revision` or later, once every one of `workloads` is among them."""
    found = {e["workload"]: e for p in pushes if p["version"] >= revision for e in p.get("security", [])}
    return found if all(w in found for w in workloads) else None


def _endpoint(sidecar, host: str) -> dict | None:  # type: ignore[no-untyped-def]
    for cluster in sidecar.config_dump()["clusters"]:
        if cluster["host"] == host and cluster["endpoints"]:
            return cluster["endpoints"][0]
    return None


async def test_mesh_wide_strict_then_a_workload_disable_reach_each_running_sidecar(mesh: ControlPlane) -> None:
    ns = "pa1"
    apps = [await Backend("fin").start(), await Backend("other").start()]
    nc = await mesh.nats_client("proxy")  # pushes reach every proxy
    operator = await mesh.nats_client("operator")  # the config API
    seen: list[dict] = []

    async def on_push(msg) -> None:  # type: ignore[no-untyped-def]
        seen.append(json.loads(msg.data))

    sub = await nc.subscribe("isthmus.xds.push", cb=on_push)
    policies: list[tuple[str, str]] = []
    try:
        fin = await mesh.proxy("fin", apps[0].port, 9080, ns, "app=fin").ready()
        other = await mesh.proxy("other", apps[1].port, 9080, ns, "app=other").ready()
        fin_id, other_id = fin.config_dump()["proxy"]["id"], other.config_dump()["proxy"]["id"]
        # the client's view of fin: a sidecar with its identity, mTLS on its port
        ep = await eventually(lambda: _endpoint(other, fqdn("fin", ns)))
        security = fin.config_dump()["security"]
        # no policy: the default entry (Istio's PERMISSIVE), at the revision of fin's registration: pilot sent it
        assert security["mtls_mode"] == "PERMISSIVE" and security["version"] > 0
        assert (ep["sidecar"], ep["identity"], ep["auto_mtls"]) == (True, f"spiffe://cluster.local/ns/{ns}/sa/default",
                                                                    [9080])
        uptime = fin.config_dump()["proxy"]["uptime_s"]

        policies.append(("istio-system", "default"))
        reply = await apply_ok(mesh, MESH_STRICT, fin, other)
        for sidecar in (fin, other):
            security = sidecar.config_dump()["security"]
            assert (security["mtls_mode"], security["port_mtls"]) == ("STRICT", {})  # STRICT on every port
            assert security["peer_authentications"] == ["istio-system/default"]
        # the push on the bus (our own subscriber may get it after the sidecars did)
        pushed = await eventually(lambda: _pushed(seen, reply["revision"], fin_id, other_id))
        assert (pushed[fin_id]["mtls_mode"], pushed[other_id]["mtls_mode"]) == ("STRICT", "STRICT")

        policies.append((ns, "fin"))
        reply = await apply_ok(mesh, workload_disable(ns), fin, other)
        assert fin.config_dump()["security"]["mtls_mode"] == "DISABLE"
        assert fin.config_dump()["security"]["peer_authentications"] == ["istio-system/default", f"{ns}/fin"]
        assert other.config_dump()["security"]["mtls_mode"] == "STRICT"
        pushed = await eventually(lambda: _pushed(seen, reply["revision"], fin_id))
        assert pushed == {fin_id: pushed[fin_id]} and pushed[fin_id]["mtls_mode"] == "DISABLE"  # only fin's changed
        # clients now send plaintext to fin (auto mTLS follows its DISABLE), still mTLS to the others
        # (an empty list is a default, left out of the dump)
        assert _endpoint(other, fqdn("fin", ns)).get("auto_mtls", []) == []
        assert _endpoint(fin, fqdn("other", ns))["auto_mtls"] == [9080]
        # portLevelMtls names the app's port (registered by the sidecar), not the service port 9080
        port_level = workload_disable(ns).replace("mtls: {mode: DISABLE}", f"""mtls: {{mode: STRICT}}
  portLevelMtls:
    {apps[0].port}: {{mode: DISABLE}}""")
        await apply_ok(mesh, port_level, fin, other)
        security = fin.config_dump()["security"]
        assert (security["mtls_mode"], security["port_mtls"]) == ("STRICT", {str(apps[0].port): "DISABLE"})
        assert _endpoint(other, fqdn("fin", ns)).get("auto_mtls", []) == []  # 9080 reaches that app port
        # same processes throughout: the changes reached them open
        assert fin.process.is_running and fin.config_dump()["proxy"]["uptime_s"] >= uptime
        # with the policies deleted, the default entry is back (PERMISSIVE), newer than the deletion
        refs = [{"kind": "pa", "name": name, "namespace": namespace} for namespace, name in policies]
        deleted = json.loads((await operator.request("isthmus.config.delete", json.dumps({"resources": refs}).encode(),
                                               timeout=10)).data)
        assert deleted["ok"], deleted
        policies.clear()
        await fin.holds(deleted["revision"])
        security = fin.config_dump()["security"]
        assert security["version"] >= deleted["revision"]
        assert security == {"mtls_mode": "PERMISSIVE", "port_mtls": {}, "peer_authentications": [],
                            "authorization": [], "jwt": [], "telemetry": [], "version": security["version"]}
    finally:
        await sub.unsubscribe()
        if policies:
            refs = [{"kind": "pa", "name": name, "namespace": namespace} for namespace, name in policies]
            await operator.request("isthmus.config.delete", json.dumps({"resources": refs}).encode(), timeout=10)
        await nc.close()
        await operator.close()
        for app in apps:
            await app.stop()


def run_cli(plane: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


async def test_the_cli_applies_lists_and_deletes_peer_authentications_by_istios_short_names(mesh: ControlPlane) -> None:
    text = workload_disable("pa2") + "---\n" + workload_disable("istio-system").replace("name: fin", "name: ignored")
    applied = await asyncio.to_thread(run_cli, mesh, "apply", "-f", "-", stdin=text)
    assert applied.returncode == 0, applied.stderr
    assert "peerauthentication.security.istio.io/fin created" in applied.stdout
    assert "applies to no workload" in applied.stderr  # the selector in the root namespace
    listed = await asyncio.to_thread(run_cli, mesh, "get", "pa", "-A")
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:3] == ["NAME", "NAMESPACE", "MODE"] and ["fin", "pa2", "DISABLE"] in [r[:3] for r in rows]
    got = await asyncio.to_thread(run_cli, mesh, "get", "peerauthentication", "fin", "-n", "pa2", "-o", "json")
    assert json.loads(got.stdout)["spec"]["selector"]["matchLabels"] == {"app": "fin"}
    bad = await asyncio.to_thread(run_cli, mesh, "apply", "-f", "-",
                                  stdin=workload_disable("pa2").replace("mode: DISABLE", "mode: LOOSE"))
    assert bad.returncode == 1 and "spec.mtls.mode" in bad.stderr and "unsupported mode `LOOSE`" in bad.stderr
    for name, ns in (("fin", "pa2"), ("ignored", "istio-system")):
        deleted = await asyncio.to_thread(run_cli, mesh, "delete", "pa", name, "-n", ns)
        assert deleted.returncode == 0, deleted.stderr
    gone = await asyncio.to_thread(run_cli, mesh, "get", "pa", "fin", "-n", "pa2")
    assert gone.returncode == 1 and "not found" in gone.stderr

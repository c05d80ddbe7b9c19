"""The config API over NATS request/reply, as scripts and the CLI use it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import nats
import pytest

from isthmus.launch import free_port
from tests.integration.conftest import ControlPlane, Sidecar, apply, eventually

pytestmark = pytest.mark.asyncio

VS = """apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: ratings
  namespace: api
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
"""


async def request(plane: ControlPlane, subject: str, payload: bytes) -> dict:
    nc = await plane.nats_client()
    try:
        return json.loads((await nc.request(subject, payload, timeout=10)).data)
    finally:
        await nc.close()


async def test_a_five_line_nats_script_applies_a_virtual_service_and_a_watcher_sees_the_event(mesh: ControlPlane) -> None:
    nc = await mesh.nats_client()
    events: asyncio.Queue[dict] = asyncio.Queue()

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        await events.put(json.loads(msg.data))

    await nc.subscribe("isthmus.config.events", cb=on_event)
    reply = json.loads((await nc.request("isthmus.config.apply", VS.encode(), timeout=10)).data)
    assert reply["ok"] and reply["results"][0]["action"] in ("created", "configured"), reply
    event = await asyncio.wait_for(events.get(), 5)
    assert (event["kind"], event["namespace"], event["name"]) == ("VirtualService", "api", "ratings")
    assert event["revision"] == reply["revision"]
    await nc.close()


async def test_applying_the_same_document_twice_reports_unchanged(mesh: ControlPlane) -> None:
    await apply(mesh, VS)
    again = await apply(mesh, VS)
    assert again["results"][0]["action"] == "unchanged"


async def test_get_returns_the_stored_resource_and_delete_removes_it(mesh: ControlPlane) -> None:
    await apply(mesh, VS)
    got = await request(mesh, "isthmus.config.get", b'{"kind": "vs", "namespace": "api", "name": "ratings"}')
    assert got["ok"] and len(got["resources"]) == 1
    resource = got["resources"][0]
    assert resource["apiVersion"] == "networking.istio.io/v1alpha3"
    assert resource["spec"]["hosts"] == ["ratings"]
    deleted = await request(mesh, "isthmus.config.delete",
                            b'{"resources": [{"kind": "VirtualService", "name": "ratings", "namespace": "api"}]}')
    assert deleted["results"][0]["action"] == "deleted"
    got = await request(mesh, "isthmus.config.get", b'{"kind": "VirtualService", "namespace": "api"}')
    assert got["ok"] is True and got["resources"] == []


async def test_a_submission_with_one_bad_document_stores_nothing(mesh: ControlPlane) -> None:
    good = VS.replace("name: ratings\n", "name: details\n", 1)
    bad = VS.replace("name: ratings\n", "name: broken\n", 1).replace("  http:", "  tls: [{route: [{destination: {host: x}}]}]\n  http:")
    reply = await apply(mesh, good + "---\n" + bad)
    assert not reply["ok"]
    assert reply["errors"][0]["document"] == 2 and reply["errors"][0]["path"] == "spec.tls[0].match"
    got = await request(mesh, "isthmus.config.get", b'{"kind": "vs", "namespace": "api", "name": "details"}')
    assert got["resources"] == []


async def test_an_unknown_kind_is_an_error_naming_it(mesh: ControlPlane) -> None:
    reply = await apply(mesh, VS.replace("kind: VirtualService", "kind: VirtualServise"))
    assert not reply["ok"]
    assert "VirtualServise" in reply["errors"][0]["message"]


async def test_a_malformed_request_gets_an_error_reply_and_pilot_keeps_serving(mesh: ControlPlane) -> None:
    reply = await request(mesh, "isthmus.config.get", b"{not json")
    assert reply["ok"] is False and "malformed" in reply["error"]
    assert (await apply(mesh, VS))["ok"]


async def test_restarting_pilot_loses_no_config_and_proxies_get_it_from_the_new_pilot(mesh: ControlPlane) -> None:
    """Through pilot, not etcd: the get API answers, a sidecar started after the restart receives the route
    compiled from what was stored before it, and one running across the restart follows the new pilot."""
    durable = VS.replace("name: ratings\n", "name: durable\n", 1).replace("  - ratings\n", "  - durable\n", 1)
    reply = await apply(mesh, durable)
    assert reply["ok"]
    host = "durable.api.svc.cluster.local"

    def route_version(sidecar: Sidecar) -> int:
        return {r["host"]: r["version"] for r in sidecar.config_dump()["routes"]}.get(host, 0)

    before = await mesh.proxy("ratings", free_port(), namespace="api").ready()
    await eventually(lambda: route_version(before) == reply["revision"])
    old_epoch = before.config_dump()["epoch"]

    await mesh.restart_service("pilot")
    got = await request(mesh, "isthmus.config.get", b'{"kind": "vs", "namespace": "api", "name": "durable"}')
    assert [r["metadata"]["name"] for r in got["resources"]] == ["durable"]
    after = await mesh.proxy("ratings", free_port(), namespace="api").ready()  # ready: it holds a snapshot
    assert route_version(after) == reply["revision"]
    assert after.config_dump()["epoch"] != old_epoch  # from the new pilot's term

    # the new pilot pushes changes, and the sidecar that lived through the restart takes them
    changed = await apply(mesh, durable.replace("  - route:", "  - timeout: 5s\n    route:"))
    assert changed["ok"], changed
    for sidecar in (before, after):
        await eventually(lambda: route_version(sidecar) == changed["revision"])


def run_cli(plane: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


async def test_cli_applies_gets_and_deletes_like_kubectl(mesh: ControlPlane, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "vs.yaml"
    path.write_text(VS.replace("name: ratings\n", "name: cli\n", 1))
    applied = await asyncio.to_thread(run_cli, mesh, "apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    assert "virtualservice.networking.istio.io/cli" in applied.stdout
    got = await asyncio.to_thread(run_cli, mesh, "get", "vs", "cli", "-n", "api", "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == "cli"
    empty = await asyncio.to_thread(run_cli, mesh, "get", "virtualservices", "-n", "nothing-here")
    assert empty.returncode == 0 and empty.stdout.strip() == ""
    deleted = await asyncio.to_thread(run_cli, mesh, "delete", "VirtualService", "cli", "-n", "api")
    assert deleted.returncode == 0, deleted.stderr
    missing = await asyncio.to_thread(run_cli, mesh, "get", "vs", "cli", "-n", "api")
    assert missing.returncode == 1


async def test_cli_rejects_an_invalid_file_with_document_and_path(mesh: ControlPlane) -> None:
    bad = VS.replace("host: ratings\n", "host: ratings\n      weight: heavy\n")
    result = await asyncio.to_thread(run_cli, mesh, "apply", "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert "spec.http[0].route[0].weight" in result.stderr
    assert "document 1" in result.stderr


PA_WITHOUT_NAMESPACE = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
spec:
  mtls:
    mode: STRICT
"""


async def test_apply_n_puts_documents_without_a_namespace_there_and_refuses_a_mismatch_like_kubectl(
        mesh: ControlPlane) -> None:
    """Istio's tasks apply YAML without a namespace with `kubectl apply -n NS`: it applies unchanged."""
    applied = await asyncio.to_thread(run_cli, mesh, "apply", "-n", "nsflag", "-f", "-", stdin=PA_WITHOUT_NAMESPACE)
    assert applied.returncode == 0, applied.stderr
    got = await asyncio.to_thread(run_cli, mesh, "get", "pa", "default", "-n", "nsflag", "-o", "json")
    assert got.returncode == 0 and '"namespace": "nsflag"' in got.stdout, got.stdout + got.stderr
    plain = await asyncio.to_thread(run_cli, mesh, "get", "pa", "default", "-n", "default")
    assert plain.returncode != 0  # without -n it would have gone to `default`: it did not
    other = PA_WITHOUT_NAMESPACE.replace('  name: "default"\n', '  name: "default"\n  namespace: elsewhere\n')
    refused = await asyncio.to_thread(run_cli, mesh, "apply", "-n", "nsflag", "-f", "-", stdin=other)
    assert refused.returncode == 1
    assert ('the namespace from the provided object "elsewhere" does not match the namespace "nsflag"'
            in refused.stdout + refused.stderr), refused.stdout + refused.stderr
    bad = await asyncio.to_thread(run_cli, mesh, "apply", "-n", "Not_A_Namespace", "-f", "-", stdin=PA_WITHOUT_NAMESPACE)
    assert bad.returncode == 1 and "is not a valid namespace name" in bad.stdout + bad.stderr
    deleted = await asyncio.to_thread(run_cli, mesh, "delete", "pa", "default", "-n", "nsflag")
    assert deleted.returncode == 0, deleted.stderr

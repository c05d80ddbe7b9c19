"""`isthmus analyze` against a real control plane (nats-server, etcd, auth, registry, pilot, ca) and a real
sidecar: the live config, the registry's workloads and the ca's secrets; files laid over the live config and
checked by pilot's config.validate without being stored; who may ask registry.list and config.validate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import nats.errors
import pytest

from proto.config_api import GetReply, GetRequest
from proto.subjects import CONFIG_GET, CONFIG_VALIDATE, REGISTRY_LIST
from tests.integration.conftest import ControlPlane, apply_ok, eventually
from tests.integration.httpclient import Backend
from tests.integration.test_bus_lockdown import Violations, connect_as, issue

pytestmark = pytest.mark.asyncio

LIVE = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: az}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: az}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: az}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: az-cert}
"""

# pilot refuses the first (a duplicate host), warns about the second's weights (IST0133) and its duplicate match
# (reported once, as IST0131, not again as a schema warning); the third routes to a host nothing provides
FILE = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: twice}
spec:
  hosts: [ratings, ratings]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split}
spec:
  hosts: [split]
  http:
  - match: [{uri: {exact: /a}}, {uri: {exact: /a}}]
    route: [{destination: {host: reviews}, weight: 40}, {destination: {host: reviews}, weight: 50}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lost}
spec:
  hosts: [lost]
  http: [{route: [{destination: {host: nowhere}}]}]
"""


def analyze(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, "analyze", *args],
                          capture_output=True, text=True, timeout=60)


async def test_live_analysis_reads_the_config_the_registry_and_the_cas_secrets(mesh: ControlPlane) -> None:
    backend = await Backend("az").start()
    try:
        sidecar = await mesh.proxy("reviews", backend.port, 9080, "az", labels="version=v1").ready()
        await apply_ok(mesh, LIVE, sidecar)

        async def analyzed() -> subprocess.CompletedProcess[str] | None:
            result = await asyncio.to_thread(analyze, mesh, "-n", "az", "-o", "json")
            return result if "IST0173" in result.stdout else None  # once the registry holds the workload

        result = await eventually(analyzed, timeout=20, interval=0.5)
        assert result.returncode == 79, result.stderr
        got = sorted((m["code"], m["origin"], m["message"]) for m in json.loads(result.stdout))
        assert got == [
            ("IST0101", "Gateway az/edge", 'Referenced credentialName not found: "az-cert"'),
            ("IST0173", "DestinationRule az/reviews", "The Subset v2 defined in the DestinationRule does not select "
                                                      "any pods. Which may lead to 503 UH (NoHealthyUpstream)."),
        ], result.stdout
        assert "note:" not in result.stderr  # every source answered
        other = await asyncio.to_thread(analyze, mesh, "-n", "elsewhere")
        assert other.returncode == 0 and other.stdout == "", other.stdout
    finally:
        await backend.stop()


async def test_files_are_laid_over_the_live_mesh_and_validated_by_pilot_without_being_stored(
        mesh: ControlPlane, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "change.yaml"
    path.write_text(FILE)
    result = await asyncio.to_thread(analyze, mesh, "-n", "az", "-f", str(path), "-o", "json")
    assert result.returncode == 79, result.stderr
    got = [(m["code"], m["origin"], m["message"]) for m in json.loads(result.stdout)]
    codes = sorted((code, origin) for code, origin, _ in got)
    assert ("IST0106", "VirtualService az/twice") in codes
    assert ("IST0101", "VirtualService az/lost") in codes  # the registry knows no `nowhere`
    assert ("IST0133", "VirtualService az/split") in codes
    assert [c for c in codes if c == ("IST0131", "VirtualService az/split")] == [("IST0131", "VirtualService az/split")]
    assert not any(code == "IST0133" and "virtualService rule" in message for code, _, message in got)
    assert any("duplicate host" in message for code, _, message in got if code == "IST0106"), got
    # config.validate stored nothing
    bus = await mesh.bus("test-analyze")
    try:
        reply = await bus.call(CONFIG_GET, GetRequest(kind="VirtualService", namespace="az"), GetReply)
    finally:
        await bus.close()
    assert sorted(r["metadata"]["name"] for r in reply.resources) == ["reviews"]


async def test_a_proxy_may_not_list_the_registry_nor_ask_pilot_to_validate(mesh: ControlPlane) -> None:
    errors = Violations()
    proxy = await connect_as(mesh, await issue(mesh, "az", "reviews"), errors)
    try:
        for subject in (REGISTRY_LIST, CONFIG_VALIDATE):
            with pytest.raises(nats.errors.TimeoutError):  # nothing answers: the server dropped it
                await proxy.request(subject, b"{}", timeout=1)
            await errors.seen(f'permissions violation for publish to "{subject}"')
    finally:
        await proxy.close()


async def test_config_validate_answers_as_apply_would_and_stores_nothing(mesh: ControlPlane) -> None:
    good = "kind: VirtualService\napiVersion: networking.istio.io/v1\nmetadata: {name: dry, namespace: dry}\n" \
           "spec:\n  hosts: [dry]\n  http: [{route: [{destination: {host: dry}}]}]\n"
    bus = await mesh.bus("test-validate")
    try:
        reply = json.loads(await bus.request(CONFIG_VALIDATE, good.encode(), timeout=10))
        assert reply["ok"] and reply["dry_run"] and reply["revision"] == 0, reply
        assert [r["action"] for r in reply["results"]] == ["created"]
        bad = json.loads(await bus.request(CONFIG_VALIDATE, good.replace("[dry]", "[dry, dry]").encode(), timeout=10))
        assert not bad["ok"] and "duplicate host" in bad["errors"][0]["message"], bad
        listed = await bus.call(CONFIG_GET, GetRequest(kind="VirtualService", namespace="dry"), GetReply)
        assert listed.resources == []
        applied = json.loads(await bus.request("isthmus.config.apply", good.encode(), timeout=10))
        assert applied["ok"] and not applied["dry_run"] and applied["revision"] > 0
        again = json.loads(await bus.request(CONFIG_VALIDATE, good.encode(), timeout=10))
        assert [r["action"] for r in again["results"]] == ["unchanged"]
    finally:
        await bus.close()

"""`isthmus proxy-config`, `proxy-status -o wide|PROXY` and `proxy log`: one sidecar asked over the real bus (its
own debug subject), against the real pilot; only the operator may ask, and only that proxy may answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import nats
import pytest

from proto.subjects import proxy_debug_subject
from tests.integration.conftest import ControlPlane, apply_ok, destination_rule, eventually, fqdn, route_to
from tests.integration.httpclient import Backend
from tests.integration.test_bus_lockdown import Violations, connect_as

pytestmark = pytest.mark.asyncio


def isthmus(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, *args],
                          capture_output=True, text=True, timeout=60)


def line_of(text: str, prefix: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert lines, f"no line starts with {prefix!r} in:\n{text}"
    return lines[0]


async def run(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(isthmus, plane, *args)


async def test_proxy_config_status_diff_and_log_level_read_the_proxy_over_the_bus(mesh: ControlPlane) -> None:
    backend = await Backend("pc").start()
    sidecar = await mesh.proxy("pc-app", backend.port, 9080, "pc", labels="version=v1").ready()
    proxy_id = sidecar.config_dump()["proxy"]["id"]
    try:
        await apply_ok(mesh, (destination_rule("pc", ("v1", "v2")) + "\n---" + route_to("pc", "v1")).replace(
            "reviews", "pc-app"), sidecar)
        host = fqdn("pc-app", "pc")

        async def reported() -> bool:  # pilot has the ACK naming the proxy's bus credential
            result = await run(mesh, "proxy-status", "-o", "json")
            return any(r["proxy"] == proxy_id and r["proxy_version"] for r in json.loads(result.stdout or "[]"))

        await eventually(reported, timeout=20, interval=0.5)

        clusters = await run(mesh, "proxy-config", "clusters", "pc-app.pc")  # SERVICE.NAMESPACE names it
        assert clusters.returncode == 0, clusters.stderr
        line = line_of(clusters.stdout, host)
        assert "v1,v2" in line and "pc/pc-app" in line, clusters.stdout

        endpoints = await run(mesh, "proxy-config", "endpoints", proxy_id[:12], "-o", "json")  # a prefix names it
        held = json.loads(endpoints.stdout)
        mine = next(c for c in held["clusters"] if c["host"] == host)
        assert [e["address"] for e in mine["endpoints"]] == ["127.0.0.1"]
        table = await run(mesh, "proxy-config", "endpoints", proxy_id)
        assert "HEALTHY" in line_of(table.stdout, "127.0.0.1:"), table.stdout

        secret = await run(mesh, "proxy-config", "secret", proxy_id)
        assert secret.returncode == 0, secret.stderr
        assert "URI:spiffe://cluster.local/ns/pc/sa/default" in secret.stdout and "ROOTCA" in secret.stdout
        everything = await run(mesh, "proxy-config", "all", proxy_id)
        assert "PRIVATE KEY" not in everything.stdout and "BEGIN" not in everything.stdout

        wide = await run(mesh, "proxy-status", "-o", "wide")
        cells = line_of(wide.stdout, proxy_id).split()
        assert cells[3:6] == ["SYNCED", "SYNCED", "SYNCED"], wide.stdout  # overall, clusters, routes
        # its security entry (the default: no policy applies) is sent to every registered workload; no gateway
        assert cells[6:9] == ["SYNCED", "NOT", "SENT"], wide.stdout
        routes = await run(mesh, "proxy-config", "routes", "pc-app.pc")
        assert "pc-app.pc.svc.cluster.local|v1" in line_of(routes.stdout, host), routes.stdout

        one = await run(mesh, "proxy-status", "pc-app.pc")
        assert one.returncode == 0, one.stderr
        assert "Clusters Match" in one.stdout and "Routes Match" in one.stdout, one.stdout

        level = await run(mesh, "proxy", "log", proxy_id, "--level", "debug")
        assert level.returncode == 0, level.stderr
        assert "log level debug (was info)" in level.stdout
        assert "log level debug" in (await run(mesh, "proxy", "log", proxy_id)).stdout
        bad = await run(mesh, "proxy-config", "routes", "nobody-here")
        assert bad.returncode == 1 and "no proxy 'nobody-here'" in bad.stderr
    finally:
        await backend.stop()


async def test_only_the_operator_asks_and_only_the_proxy_answers_on_its_debug_subject(mesh: ControlPlane) -> None:
    """Another proxy's credential may neither send debug requests nor listen on a proxy's debug subject."""
    victim = await mesh.issue_credentials("pc", "default")
    spy_creds = await mesh.issue_credentials("pc", "other")
    errors = Violations()
    spy = await connect_as(mesh, spy_creds, errors)
    subject = proxy_debug_subject(victim.user.removeprefix("proxy."))
    try:
        await spy.subscribe(subject)
        await errors.seen(f'permissions violation for subscription to "{subject}"')
        await spy.publish(subject, b'{"proxy_id": "x"}')
        await errors.seen(f'permissions violation for publish to "{subject}"')
        own = proxy_debug_subject(spy_creds.user.removeprefix("proxy."))
        await spy.subscribe(own)  # its own subject: allowed
        await spy.flush()
        assert not any(own in e for e in errors.errors)
    finally:
        await spy.close()
    operator = await mesh.nats_client("operator")
    try:
        with pytest.raises(nats.errors.NoRespondersError):  # the operator may send: nobody holds that proxy's
            await operator.request(subject, b'{"proxy_id": "x"}', timeout=2)
    finally:
        await operator.close()


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: pc-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""


async def test_a_gateway_answers_too_and_its_gateway_listeners_are_synced(mesh: ControlPlane) -> None:
    from tests.integration.gateway_edge import GatewayProcess

    gateway = await GatewayProcess(mesh, "istio-ingressgateway", (80,)).ready()
    gateway_id = gateway.config_dump()["proxy"]["id"]
    reply = await apply_ok(mesh, GATEWAY)
    await gateway.holds(reply["revision"])

    async def synced() -> list[str] | None:
        wide = await run(mesh, "proxy-status", "-o", "wide")
        lines = [line.split() for line in wide.stdout.splitlines() if line.startswith(gateway_id)]
        return lines[0] if lines and lines[0][-6] == "SYNCED" else None  # GATEWAYS, before VERSION..LAST REPORT

    await eventually(synced, timeout=20, interval=0.5)
    listeners = await run(mesh, "proxy-config", "listeners", gateway_id)
    assert listeners.returncode == 0, listeners.stderr
    assert "default/pc-gateway" in line_of(listeners.stdout, "gateway 80"), listeners.stdout
    info = json.loads((await run(mesh, "proxy-status", "-o", "json")).stdout)
    assert next(r for r in info if r["proxy"] == gateway_id)["type"] == "gateway"

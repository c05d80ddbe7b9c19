"""Istio's task "Egress Gateways", "Egress gateway for HTTP traffic" (Istio API), end to end: the task's
ServiceEntry, Gateway, DestinationRule and VirtualService applied unchanged through the config API but for one
addition, a real `isthmus gateway run --name istio-egressgateway`, and a client app (the task's sleep) whose
request for http://edition.cnn.com/politics goes through its sidecar (curl with the sidecar as its HTTP proxy),
then the egress gateway, then out. Then REGISTRY_ONLY: a host without a ServiceEntry is refused at the sidecar.

Nothing outside is reachable here, so "edition.cnn.com" is a server on loopback: the task's ServiceEntry gets
`endpoints: [{address: 127.0.0.1, ports: {http-port: <its port>}}]` (Istio's own field: with resolution DNS an
endpoint's address is what is resolved, an IP as is), the only change to the task's YAML."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.conftest import ControlPlane, eventually, fqdn
from tests.integration.gateway_edge import GatewayProcess, Httpbin, apply_task, curl, task
from tests.integration.test_passthrough import set_policy

pytestmark = [pytest.mark.asyncio, pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")]

EGRESS_GATEWAY = fqdn("istio-egressgateway", "istio-system")


def with_loopback_endpoint(text: str, port: int) -> str:
    """The task's YAML with the ServiceEntry's one addition: where "edition.cnn.com" answers here."""
    anchor = "  resolution: DNS\n"
    assert text.count(anchor) == 1
    return text.replace(anchor, anchor + f"  endpoints:\n  - address: 127.0.0.1\n    ports:\n      http-port: {port}\n")


async def test_egress_gateway_for_http_traffic_task_then_registry_only(
        mesh: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    cnn = await Httpbin("edition.cnn.com").start()  # the outside host
    sleep_app = await Httpbin("sleep").start()
    sleep_log = mesh.state_dir / "logs" / "sleep-access.log"
    sleep = mesh.proxy("sleep", sleep_app.port, 80, "default", "app=sleep", ("--service-account", "sleep",
                       "--access-log", str(sleep_log)), env={"ISTHMUS_ACCESS_LOG_FLUSH_INTERVAL": "0.2"})
    egress = GatewayProcess(mesh, "istio-egressgateway", (80,))
    try:
        await sleep.ready(60)
        await egress.ready()
        await eventually(lambda: sleep.endpoints(EGRESS_GATEWAY) >= 1, timeout=30)
        revision = await apply_task(mesh, with_loopback_endpoint(task("egress-gateway-http.yaml"), cnn.port), egress)
        await sleep.holds(revision, 20)
        assert egress.config_dump()["gateway"], "the egress gateway holds the task's Gateway"

        # snip_egress_gateway_for_http_traffic_7: kubectl exec sleep -- curl -sSL -o /dev/null -D - http://edition.cnn.com/politics
        proxy = ("-x", f"http://127.0.0.1:{sleep.outbound_port}")

        async def through() -> int:
            return (await curl(*proxy, "-sSL", "-o", "/dev/null", "-D", "-", "http://edition.cnn.com/politics"))[0]
        await eventually(lambda: through_ok(through), timeout=20)
        assert cnn.requests[-1][":path"] == "/politics" and cnn.requests[-1]["host"] == "edition.cnn.com"
        # sidecar -> egress gateway -> outside, each hop in its own access log (snip _8/_9)
        line = await egress.logged('"GET /politics HTTP/1.1" 200')
        assert "outbound|80||edition.cnn.com" in line and '"edition.cnn.com"' in line, line
        assert f'"127.0.0.1:{cnn.port}"' in line, line
        side = await eventually(lambda: next((ln for ln in (sleep_log.read_text().splitlines() if sleep_log.exists()
                                                            else []) if '"GET /politics HTTP/1.1" 200' in ln), None))
        assert f"outbound|80|cnn|{EGRESS_GATEWAY}" in side, side
        assert f'"127.0.0.1:{egress.listen[80]}"' in side, side

        # REGISTRY_ONLY (meshConfig.outboundTrafficPolicy, pilot's ISTHMUS_OUTBOUND_TRAFFIC_POLICY): a host with no
        # ServiceEntry is refused at the sidecar with 502 (Istio's BlackHoleCluster); edition.cnn.com still works
        other = await Httpbin("not-registered").start()
        try:
            await set_policy(mesh, monkeypatch, "REGISTRY_ONLY", sleep)
            code, _ = await curl(*proxy, f"http://localhost:{other.port}/anything")
            assert code == 502 and not other.requests
            blackhole = await eventually(lambda: next((ln for ln in sleep_log.read_text().splitlines()
                                                       if '"GET /anything HTTP/1.1" 502' in ln), None))
            assert "BlackHoleCluster" in blackhole, blackhole
            seen = len(cnn.requests)
            assert await through() == 200 and len(cnn.requests) == seen + 1
            await eventually(lambda: len([ln for ln in egress.access_lines() if '"GET /politics HTTP/1.1" 200' in ln])
                             >= 2)  # still through the egress gateway
        finally:
            await other.stop()
            await set_policy(mesh, monkeypatch, "ALLOW_ANY", sleep)
    finally:
        await cnn.stop()
        await sleep_app.stop()


async def through_ok(through) -> bool:  # type: ignore[no-untyped-def]
    return await through() == 200

"""The gateway proxy against the real control plane (nats-server, etcd, registry, pilot, ca): `isthmus gateway run`
registers as a gateway with Istio's labels and serves 503 before any Gateway config; a gateway fed a hand-built
Gateway push (until pilot compiles Gateways) routes curl's requests by Host to an app behind a real sidecar,
with mutual TLS from the gateway's own workload certificate (auto mTLS), its metrics reporter="source"."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import urllib.request

import pytest

from isthmus.launch import ManagedProcess, free_port, project_env
from proto.gateway_xds import GatewayListeners, GatewayPortConfig, GatewayServer, VirtualHost
from proto.xds import HttpRule, Push, RouteConfig, WeightedDestination
from proxy.gateway.main import Gateway
from proxy.settings import ProxyOptions
from tests.integration.conftest import LEASE_TTL, ControlPlane, eventually
from tests.integration.httpclient import Backend

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")]

PRODUCTPAGE = "productpage.gwtest.svc.cluster.local"


def admin(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def curl(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "--max-time", "10", "-w", "\nstatus=%{http_code}",
                                                *argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode(errors="replace")


async def test_gateway_run_registers_with_istios_labels_and_answers_503_before_gateway_config(
        mesh: ControlPlane) -> None:
    http_port, admin_port = free_port(), free_port()
    argv = [sys.executable, "-m", "isthmus.cli", "--config", str(mesh.config_path), "--nats", mesh.nats_url,
            "gateway", "run", "--name", "istio-ingressgateway", "--port", f"{http_port}:80",
            "--admin-port", str(admin_port), "--listen-host", "127.0.0.1", "--lease-ttl", str(LEASE_TTL)]
    proc = ManagedProcess("gateway-cli", argv, log_path=mesh.state_dir / "logs" / "gateway-cli.log",
                          env=project_env(None))
    proc.start()
    mesh.proxies.append(proc)
    app = await Backend("productpage").start()
    sidecar = mesh.proxy("productpage", app.port, 9080, "gwtest", "app=productpage")
    try:
        await sidecar.ready()

        def ready() -> bool:
            assert proc.is_running, proc.log_tail()
            try:
                return admin(admin_port, "/ready")[0] == 200
            except OSError:
                return False
        await eventually(ready, timeout=30)
        info = json.loads(admin(admin_port, "/server_info")[1])
        assert info["gateway"] is True and info["namespace"] == "istio-system"
        assert info["labels"] == {"istio": "ingressgateway", "app": "istio-ingressgateway"}
        # the registry took it: a sidecar's config holds the gateway's service with its endpoint at the listen port
        gateway_host = "istio-ingressgateway.istio-system.svc.cluster.local"
        await eventually(lambda: sidecar.endpoints(gateway_host) >= 1, timeout=20)
        out = await curl("-v", "--resolve", f"bookinfo.example.com:{http_port}:127.0.0.1",
                         f"http://bookinfo.example.com:{http_port}/productpage")
        assert "status=503" in out, out  # no Gateway selects it yet: nothing is served on its ports
    finally:
        await app.stop()


async def test_a_gateway_routes_by_host_to_an_app_behind_a_sidecar_with_mutual_tls(mesh: ControlPlane) -> None:
    app = await Backend("productpage").start()
    sidecar = mesh.proxy("productpage", app.port, 9080, "gwtest", "app=productpage")
    options = ProxyOptions(service="istio-ingressgateway", namespace="istio-system", service_port=80, app_port=1,
                           inbound_port=free_port(), admin_port=free_port(), lease_ttl=LEASE_TTL,
                           labels={"istio": "ingressgateway", "app": "istio-ingressgateway"},
                           service_account="istio-ingressgateway-service-account", nats_url=mesh.nats_url,
                           bus_auth=mesh.operator, metrics_interval=0.5)
    gateway = Gateway(options, [(0, 80)], "127.0.0.1")
    task = asyncio.create_task(gateway.run())
    try:
        await sidecar.ready()
        await eventually(lambda: gateway.is_ready() and gateway.identity.provider.current is not None
                         and any(ep.auto_mtls for c in gateway.state.clusters.values() if c.host == PRODUCTPAGE
                                 for ep in c.endpoints), timeout=30)
        assert gateway.identity.provider.current.spiffe_id.endswith(
            "/ns/istio-system/sa/istio-ingressgateway-service-account")
        route = RouteConfig(host=PRODUCTPAGE, version=1, source="gwtest/bookinfo",
                            rules=[HttpRule(destinations=[WeightedDestination(host=PRODUCTPAGE, weight=100)])])
        config = GatewayListeners(workload=options.id, version=1, namespace="istio-system", ports=[GatewayPortConfig(
            port=80, servers=[GatewayServer(gateway="gwtest/bookinfo-gateway", port=80, protocol="HTTP",
                                            hosts=["bookinfo.example.com"])],
            virtual_hosts=[VirtualHost(domains=["bookinfo.example.com"], route=route)])])
        gateway.state.apply(Push(epoch=gateway.state.epoch, seq=gateway.state.seq, version=gateway.state.version,
                                 gateways=[config]))  # a delta, as pilot's push of a Gateway will be
        port = gateway.http[80].port
        out = await curl("--resolve", f"bookinfo.example.com:{port}:127.0.0.1",
                         f"http://bookinfo.example.com:{port}/productpage")
        assert out.startswith("productpage") and "status=200" in out, out
        assert app.requests[-1][1] == "/productpage"
        inbound = json.loads(sidecar.admin("/server_info")[1])["inbound_mtls"]["listeners"]["inbound"]
        assert inbound["tls"] >= 1, inbound  # the gateway reached the sidecar with mutual TLS
        out = await curl("--resolve", f"other.example.com:{port}:127.0.0.1", f"http://other.example.com:{port}/")
        assert "status=404" in out, out
        text = gateway.telemetry.metrics.prometheus().decode()
        line = next(line for line in text.splitlines() if line.startswith("istio_requests_total{")
                    and 'response_code="200"' in line)
        assert 'reporter="source"' in line and 'source_workload="istio-ingressgateway"' in line, line
        assert f'destination_service="{PRODUCTPAGE}"' in line, line
    finally:
        gateway.stopping.set()
        await asyncio.wait_for(task, 20)
        await app.stop()

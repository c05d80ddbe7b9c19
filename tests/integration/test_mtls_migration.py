"""Istio's "Mutual TLS Migration" task with Istio's YAML unchanged, on real sidecars, nats, etcd, ca, pilot
and registry: PERMISSIVE (no policy) serves sidecar clients over mTLS and plaintext clients; a mesh-wide STRICT
PeerAuthentication in the root namespace refuses the plaintext client while the sidecar client still gets 200;
an endpoint whose sidecar presents another identity than it registered gets 503 UF.
(istio.io/latest/docs/tasks/security/authentication/mtls-migration/)"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.integration.conftest import ControlPlane, apply_ok, eventually, fqdn
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio

NS = "foo"

# Istio's task, verbatim
MESH_STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
  namespace: "istio-system"
spec:
  mtls:
    mode: STRICT
"""


def impostor_entry(port: int) -> str:
    """A mesh service whose one endpoint is httpbin's sidecar, registered with another service account."""
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: impostor, namespace: {NS}}}
spec:
  hosts: [impostor.{NS}.svc.cluster.local]
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}, serviceAccount: someone-else}}]
"""


def accepted(sidecar) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """What the sidecar's inbound listener took and refused (its admin /server_info)."""
    return json.loads(sidecar.admin("/server_info")[1])["inbound_mtls"]["listeners"]["inbound"]


async def plaintext_refused(port: int) -> bool:
    """A plain HTTP client straight to an inbound port: True when the connection is closed with no answer."""
    client = Client("127.0.0.1", port, timeout=5.0)
    try:
        response = await client.request("GET", "/headers", {"host": "httpbin"})
    except (ConnectionError, asyncio.IncompleteReadError, EOFError):
        return True
    finally:
        await client.close()
    return not response.status


async def test_mutual_tls_migration_permissive_then_mesh_wide_strict(mesh: ControlPlane,
                                                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    httpbin_app, sleep_app = await Backend("httpbin").start(), await Backend("sleep").start()
    httpbin = mesh.proxy("httpbin", httpbin_app.port, 8000, NS, "app=httpbin")
    access_log = tmp_path / "sleep-access.log"
    sleep = mesh.proxy("sleep", sleep_app.port, 80, NS, "app=sleep", extra=("--access-log", str(access_log)))
    await httpbin.ready()
    await sleep.ready()
    await eventually(lambda: sleep.endpoints(fqdn("httpbin", NS)) == 1)
    through_sidecar = Client("127.0.0.1", sleep.outbound_port)
    try:
        # PERMISSIVE (no policy): the sidecar client goes over mTLS, the plaintext client is served too
        response = await through_sidecar.request("GET", f"http://httpbin.{NS}:8000/headers")
        assert response.status == 200 and response.text == "httpbin"
        assert accepted(httpbin)["tls"] >= 1 and accepted(httpbin)["plaintext"] == 0
        direct = Client("127.0.0.1", httpbin.inbound_port)
        response = await direct.request("GET", "/headers", {"host": "httpbin"})
        await direct.close()
        assert response.status == 200 and response.text == "httpbin"
        assert accepted(httpbin)["plaintext"] == 1

        # mesh-wide STRICT: plaintext refused before the app sees it, the sidecar client still served
        seen = len(httpbin_app.requests)
        await apply_ok(mesh, MESH_STRICT, httpbin, sleep)
        assert await plaintext_refused(httpbin.inbound_port)
        assert accepted(httpbin)["plaintext_refused"] == 1 and len(httpbin_app.requests) == seen
        tls_before = accepted(httpbin)["tls"]
        fresh = Client("127.0.0.1", sleep.outbound_port)  # and a new upstream connection (none pooled: closed)
        for _ in range(3):
            response = await fresh.request("GET", f"http://httpbin.{NS}:8000/headers")
            assert response.status == 200 and response.text == "httpbin"
        await fresh.close()
        assert accepted(httpbin)["tls"] >= tls_before

        # an endpoint whose sidecar answers with another identity than the one it registered: 503 UF
        reply = await apply_ok(mesh, impostor_entry(httpbin.inbound_port), sleep)
        assert reply["ok"]
        failed_before = accepted(httpbin)["handshake_failed"]
        response = await through_sidecar.request("GET", f"http://impostor.{NS}:8000/headers")
        assert response.status == 503, response.text
        await eventually(lambda: any("impostor" in line and " UF " in f" {line} "
                                     for line in access_log.read_text().splitlines()), 10.0)
        assert len(httpbin_app.requests) == seen + 3  # nothing reached the app
        assert accepted(httpbin)["handshake_failed"] >= failed_before

        # a DestinationRule tls DISABLE towards the STRICT server fails, as in Istio: plaintext is refused
        refused_before = accepted(httpbin)["plaintext_refused"]
        await apply_ok(mesh, f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin, namespace: {NS}}}
spec:
  host: httpbin.{NS}.svc.cluster.local
  trafficPolicy:
    tls: {{mode: DISABLE}}
""", sleep)
        fresh = Client("127.0.0.1", sleep.outbound_port)
        response = await fresh.request("GET", f"http://httpbin.{NS}:8000/headers")
        await fresh.close()
        assert response.status == 503 and len(httpbin_app.requests) == seen + 3
        assert accepted(httpbin)["plaintext_refused"] > refused_before
    finally:
        await through_sidecar.close()
        await httpbin_app.stop()
        await sleep_app.stop()

"""Root rotation end to end under traffic (issue 10: "tested end to end under traffic with no failed
request"): two sidecars talking mutual TLS with 60 s certificates (ISTHMUS_SECRET_TTL), a bounded request loop
through the client sidecar on a pooled connection and another whose every request opens a new mTLS connection
(DestinationRule maxRequestsPerConnection 1), while `isthmus ca rotate-root` runs and both sidecars renew onto
the new root (proxy/identity/agent.py: within ROTATION_SPREAD of the new bundle). Every request gets 200, and
afterwards both sidecars' /certs show a chain under the new root. Its own module: its own plane and ca."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tests.integration.conftest import ControlPlane, Sidecar, apply_ok, eventually, fqdn
from tests.integration.httpclient import Backend, Client

pytestmark = pytest.mark.asyncio

NS = "rotation"
MAX_REQUESTS = 4000  # per loop: the loops' bound in count
MAX_SECONDS = 90.0  # and in time
PAUSE = 0.01  # seconds between one loop's requests: leaves CPU to the sidecars and the ca


def cli(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--config", str(plane.config_path), *args],
                          capture_output=True, text=True, timeout=60)


def roots(plane: ControlPlane) -> list[x509.Certificate]:
    shown = cli(plane, "ca", "bundle", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return [x509.load_pem_x509_certificate(pem.encode()) for pem in json.loads(shown.stdout)["roots_pem"]]


def under(sidecar: Sidecar, state_dir: Path, root: x509.Certificate) -> bool:
    """The sidecar's /certs shows a leaf that `root` signed (the chain it keeps in --state-dir, matched by serial)."""
    dump = json.loads(sidecar.admin("/certs")[1])
    leaf = x509.load_pem_x509_certificate((state_dir / "cert-chain.pem").read_bytes())
    if dump["workload"].get("serial_number") != format(leaf.serial_number, "x"):
        return False  # a renewal between the two reads: ask again
    try:
        leaf.verify_directly_issued_by(root)
    except (InvalidSignature, ValueError):  # another root signed it
        return False
    return dump["certificates"][0]["cert_chain"][0]["serial_number"] == format(leaf.serial_number, "x")


async def loop(port: int, url: str, statuses: Counter[int], stop: asyncio.Event) -> None:
    """GET `url` through the client sidecar on one keep-alive connection until `stop`, MAX_REQUESTS or MAX_SECONDS."""
    client = Client("127.0.0.1", port, timeout=10.0)
    deadline = time.monotonic() + MAX_SECONDS
    try:
        for _ in range(MAX_REQUESTS):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                response = await client.request("GET", url)
                statuses[response.status] += 1
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                statuses[-1] += 1  # a failed request, not an answer
                print(f"request failed: {exc!r}")
                await client.close()
                client = Client("127.0.0.1", port, timeout=10.0)
            await asyncio.sleep(PAUSE)
    finally:
        await client.close()


async def test_rotate_root_under_traffic_fails_no_request_and_moves_both_sidecars(mesh: ControlPlane,
                                                                                  tmp_path: Path) -> None:
    short = {"ISTHMUS_SECRET_TTL": "60"}  # the shortest the ca signs: a renewal every ~30 s besides the rotation's
    httpbin_app, sleep_app = await Backend("httpbin").start(), await Backend("sleep").start()
    server_dir, client_dir = tmp_path / "httpbin", tmp_path / "sleep"
    httpbin = mesh.proxy("httpbin", httpbin_app.port, 8000, NS, "app=httpbin", env=short,
                         extra=("--service-account", "httpbin", "--state-dir", str(server_dir)))
    sleep = mesh.proxy("sleep", sleep_app.port, 80, NS, "app=sleep", env=short,
                       extra=("--service-account", "sleep", "--state-dir", str(client_dir)))
    stop = asyncio.Event()
    pooled: Counter[int] = Counter()
    fresh: Counter[int] = Counter()
    loops: list[asyncio.Task[None]] = []
    try:
        await httpbin.ready()
        await sleep.ready()
        # the same sidecar behind a second host whose DestinationRule closes each upstream connection after
        # one request: every request there is a new mTLS handshake, across the rotation
        await apply_ok(mesh, f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin-fresh, namespace: {NS}}}
spec:
  hosts: [httpbin-fresh.{NS}.svc.cluster.local]
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{{address: 127.0.0.1, ports: {{http: {httpbin.inbound_port}}}, serviceAccount: httpbin}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin-fresh, namespace: {NS}}}
spec:
  host: httpbin-fresh.{NS}.svc.cluster.local
  trafficPolicy:
    connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}
""", sleep)
        await eventually(lambda: sleep.endpoints(fqdn("httpbin", NS)) == 1)
        [old_root] = roots(mesh)
        assert under(httpbin, server_dir, old_root) and under(sleep, client_dir, old_root)

        loops = [asyncio.ensure_future(loop(sleep.outbound_port, f"http://httpbin.{NS}:8000/headers", pooled, stop)),
                 asyncio.ensure_future(loop(sleep.outbound_port, f"http://httpbin-fresh.{NS}:8000/headers", fresh,
                                            stop))]
        await eventually(lambda: pooled[200] >= 10 and fresh[200] >= 10, 20)
        handshakes_before = json.loads(httpbin.admin("/server_info")[1])["inbound_mtls"]["listeners"]["inbound"]["tls"]

        rotated = await asyncio.to_thread(cli, mesh, "ca", "rotate-root")
        assert rotated.returncode == 0 and "trusts 2 roots" in rotated.stdout, rotated.stdout + rotated.stderr
        [new_root] = [root for root in roots(mesh) if root != old_root]
        # both renew within the rotation spread (10 s) of the bundle update; generous on a loaded machine
        await eventually(lambda: under(httpbin, server_dir, new_root) and under(sleep, client_dir, new_root), 45, 0.5)
        moved_at = (pooled.total(), fresh.total())
        await eventually(lambda: pooled.total() >= moved_at[0] + 10 and fresh.total() >= moved_at[1] + 10, 20)
        stop.set()
        await asyncio.gather(*loops)

        print(f"pooled {dict(pooled)}, fresh {dict(fresh)}")
        assert set(pooled) == {200} and set(fresh) == {200}, (pooled, fresh)  # no failed request, on either path
        for sidecar in (httpbin, sleep):  # both trust old and new while workloads move
            dump = json.loads(sidecar.admin("/certs")[1])
            assert len(dump["certificates"][0]["ca_cert"]) == 2, dump
            assert dump["workload"]["state"] == "valid" and dump["workload"]["renewals"] >= 1, dump
        handshakes = json.loads(httpbin.admin("/server_info")[1])["inbound_mtls"]["listeners"]["inbound"]
        assert handshakes["tls"] > handshakes_before and handshakes["plaintext"] == 0, handshakes
        assert handshakes["handshake_failed"] == 0, handshakes
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await asyncio.gather(httpbin_app.stop(), sleep_app.stop())

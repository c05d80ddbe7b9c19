"""Mutual TLS between sidecars, checked with tools nobody here wrote (openssl, curl) against real sidecars,
nats, etcd, ca, pilot and registry, as a user would: the chain a sidecar presents verifies against `isthmus
ca bundle`; in STRICT mode (Istio's mesh-wide PeerAuthentication applied with `isthmus apply -n istio-system
-f -`, its YAML unchanged) an inbound port refuses openssl without a client certificate and with one from
another CA, and serves openssl with a mesh client certificate (from a bootstrap token and a CSR through the
ca); the server certificate carries the SPIFFE URI SAN; curl in plaintext is refused while curl through the
client sidecar gets 200. Skipped when openssl or curl is absent."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.identity import ca_client, x509_client
from proxy.identity.spiffe import spiffe_id
from runtime import bus as busmod
from tests.integration.conftest import ControlPlane, Sidecar, eventually, fqdn
from tests.integration.httpclient import Backend

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")),
                                 reason="openssl and curl are needed")]

NS = "interop"
TD = "cluster.local"
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)

# Istio's "Mutual TLS Migration" task, as it is applied there: `kubectl apply -n istio-system -f -`
MESH_STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
spec:
  mtls:
    mode: STRICT
"""


def run_now(*argv: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)


async def run(*argv: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """In a thread: the test's backends answer on this event loop meanwhile."""
    return await asyncio.to_thread(run_now, *argv, stdin=stdin, timeout=timeout)


async def cli(plane: ControlPlane, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The isthmus CLI with the operator's client config (ISTHMUS_CONFIG, set while the plane runs)."""
    return await run(sys.executable, "-m", "isthmus.cli", "--config", str(plane.config_path), *args, stdin=stdin, timeout=60)


def modes(sidecar: Sidecar) -> set[str]:
    return set(json.loads(sidecar.admin("/server_info")[1])["inbound_mtls"]["modes"].values())


async def s_client(port: int, tmp: Path, cert: Path | None = None, key: Path | None = None) -> subprocess.CompletedProcess[str]:
    """openssl s_client to an inbound port, verifying the server against the mesh bundle, sending one HTTP
    request and waiting for the server to answer or close (-ign_eof)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(tmp / "bundle.pem"),
            "-verify_return_error", "-showcerts", "-ign_eof"]
    if cert is not None and key is not None:
        argv += ["-cert", str(cert), "-key", str(key)]
    return await run(*argv, stdin="GET /headers HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n\r\n")


async def mesh_client_cert(plane: ControlPlane, tmp: Path, service_account: str) -> tuple[Path, Path]:
    """A workload certificate for `service_account`, got as a proxy gets one: a bootstrap token from
    `isthmus token create`, a key and CSR made by the X.509 worker child and sent to the ca over the bus with proxy
    credentials."""
    made = await cli(plane, "token", "create", "-n", NS, "--service-account", service_account, "--ttl", "10m")
    assert made.returncode == 0, made.stderr
    made_key = await x509_client.make_key(spiffe_id(TD, NS, service_account))
    bus = await busmod.connect(plane.nats_url, "test-openssl-client",
                               auth=await plane.proxy_auth(NS, service_account))
    try:
        reply = await ca_client.sign_with_token(bus, made_key.csr_pem, made.stdout.strip())
    finally:
        await bus.close()
    (tmp / "client-key.pem").write_text(made_key.key_pem)
    (tmp / "client-chain.pem").write_text("".join(reply.cert_chain_pem))
    return tmp / "client-chain.pem", tmp / "client-key.pem"


def other_ca_client_cert(tmp: Path) -> tuple[Path, Path]:
    """A CA of the attacker's own (made by openssl) and a client certificate under it claiming a mesh identity."""
    other = tmp / "other"
    other.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    assert run_now("openssl", "req", "-x509", *ec, "-subj", "/O=cluster.local", "-days", "1",
               "-keyout", str(other / "ca.key"), "-out", str(other / "ca.pem")).returncode == 0
    assert run_now("openssl", "req", "-new", *ec, "-subj", "/", "-keyout", str(other / "key.pem"),
               "-out", str(other / "csr.pem")).returncode == 0
    (other / "ext.cnf").write_text(f"subjectAltName=URI:spiffe://{TD}/ns/{NS}/sa/sleep\n"
                                   "extendedKeyUsage=clientAuth,serverAuth\n")
    signed = run_now("openssl", "x509", "-req", "-in", str(other / "csr.pem"), "-CA", str(other / "ca.pem"),
                 "-CAkey", str(other / "ca.key"), "-CAcreateserial", "-days", "1", "-extfile", str(other / "ext.cnf"),
                 "-out", str(other / "cert.pem"))
    assert signed.returncode == 0, signed.stderr
    return other / "cert.pem", other / "key.pem"


def served(result: subprocess.CompletedProcess[str]) -> bool:
    return "HTTP/1.1 200" in result.stdout and "httpbin" in result.stdout.split("\r\n\r\n", 1)[-1]


def refused_by_server(result: subprocess.CompletedProcess[str], alert: str) -> bool:
    """openssl verified the server (so the refusal is the server's, not a bundle problem of ours), and the
    connection ended in an error with no answer (TLS 1.3 checks the client's certificate after the client's
    Finished, so openssl reports the refusal on its first read), the error naming the TLS alert `alert` as
    openssl prints it (as against Envoy), not a reset or an unexpected EOF. The server sidecar runs
    `--tls-transport uvloop` for this: aiofastnet, the default, drops the alert with the connection
    (proxy/tls/transport.py); its client sidecar stays on aiofastnet, so the two transports meet here."""
    assert "Verification: OK" in result.stdout, result.stdout + result.stderr
    assert result.returncode != 0 and not served(result), result.stdout + result.stderr
    assert alert in result.stderr, result.stderr
    return True


async def test_openssl_and_curl_see_mutual_tls_and_strict_mode_as_a_user_would(mesh: ControlPlane,
                                                                              tmp_path: Path) -> None:
    httpbin_app, sleep_app = await Backend("httpbin").start(), await Backend("sleep").start()
    state_dir = tmp_path / "httpbin-state"
    httpbin = mesh.proxy("httpbin", httpbin_app.port, 8000, NS, "app=httpbin",
                         extra=("--service-account", "httpbin", "--state-dir", str(state_dir),
                                "--tls-transport", "uvloop"))  # the transport whose refusals carry the alert
    sleep = mesh.proxy("sleep", sleep_app.port, 80, NS, "app=sleep", extra=("--service-account", "sleep"))
    applied = None
    try:
        await httpbin.ready()
        await sleep.ready()
        await eventually(lambda: sleep.endpoints(fqdn("httpbin", NS)) == 1)
        bundle = await cli(mesh, "ca", "bundle")
        assert bundle.returncode == 0 and "BEGIN CERTIFICATE" in bundle.stdout, bundle.stderr
        (tmp_path / "bundle.pem").write_text(bundle.stdout)

        # the chain the sidecar keeps in its --state-dir verifies against the bundle
        verified = await run("openssl", "verify", "-CAfile", str(tmp_path / "bundle.pem"), str(state_dir / "cert-chain.pem"))
        assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stdout + verified.stderr

        through_sidecar = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                           "-x", f"http://127.0.0.1:{sleep.outbound_port}", f"http://httpbin.{NS}:8000/headers"]
        plaintext = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                     "-H", "Host: httpbin", f"http://127.0.0.1:{httpbin.inbound_port}/headers"]
        # PERMISSIVE (no policy yet): plaintext is served, so its refusal below is STRICT's doing
        assert (await run(*plaintext)).stdout.endswith("httpbin\n200")

        applied = await cli(mesh, "apply", "-n", "istio-system", "-f", "-", stdin=MESH_STRICT)
        assert applied.returncode == 0 and "peerauthentication" in applied.stdout.lower(), applied.stderr
        await eventually(lambda: modes(httpbin) == {"STRICT"})

        # curl in plaintext to the STRICT inbound port fails; curl through the client sidecar gets 200
        refused = await run(*plaintext)
        # closed with its request unread: a reset, curl's exit 56, as Istio's mutual TLS migration task shows
        # against Envoy (a plaintext client cannot read a TLS alert; proxy/tls/acceptor.py)
        assert refused.returncode == 56 and "reset by peer" in refused.stderr, refused
        for _ in range(2):
            ok = await run(*through_sidecar)
            assert ok.returncode == 0 and ok.stdout.endswith("httpbin\n200"), ok

        seen = len(httpbin_app.requests)
        # openssl without a client certificate: the handshake is refused, nothing reaches the app
        anonymous = await s_client(httpbin.inbound_port, tmp_path)
        assert refused_by_server(anonymous, "alert certificate required")  # TLS 1.3's alert 116
        # with a client certificate from another CA (claiming a mesh identity): refused
        cert, key = other_ca_client_cert(tmp_path)
        forged = await s_client(httpbin.inbound_port, tmp_path, cert, key)
        assert refused_by_server(forged, "alert unknown ca")  # alert 48
        assert len(httpbin_app.requests) == seen

        # with a mesh client certificate: served, and the server's certificate names its SPIFFE identity
        cert, key = await mesh_client_cert(mesh, tmp_path, "openssl")
        mutual = await s_client(httpbin.inbound_port, tmp_path, cert, key)
        assert served(mutual) and "Verify return code: 0 (ok)" in mutual.stdout, mutual.stdout + mutual.stderr
        assert len(httpbin_app.requests) == seen + 1
        presented = PEM.findall(mutual.stdout)
        assert presented, mutual.stdout
        (tmp_path / "served-leaf.pem").write_text(presented[0])
        (tmp_path / "served-rest.pem").write_text("".join(presented[1:]) or presented[0])
        verified = await run("openssl", "verify", "-CAfile", str(tmp_path / "bundle.pem"),
                       "-untrusted", str(tmp_path / "served-rest.pem"), str(tmp_path / "served-leaf.pem"))
        assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stdout + verified.stderr
        text = (await run("openssl", "x509", "-noout", "-text", "-in", str(tmp_path / "served-leaf.pem"))).stdout
        assert f"URI:spiffe://{TD}/ns/{NS}/sa/httpbin" in text, text
        # the client certificate the ca made for the token names the token's identity, nothing else
        client_text = (await run("openssl", "x509", "-noout", "-text", "-in", str(cert))).stdout
        assert f"URI:spiffe://{TD}/ns/{NS}/sa/openssl" in client_text and "DNS:" not in client_text
    finally:
        await asyncio.gather(httpbin_app.stop(), sleep_app.stop())
        if applied is not None and applied.returncode == 0:  # the module's later tests run without it
            deleted = await cli(mesh, "delete", "-n", "istio-system", "PeerAuthentication", "default")
            assert deleted.returncode == 0, deleted.stderr

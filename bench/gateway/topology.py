"""What the gateway benchmark drives (issue 13), on loopback, started from scratch and stopped at the end.

    nginx                  the app: bench/dataplane/topology.py's (1 worker, keep-alive, a fixed 98-byte body)
    Isthmus                the control plane (nats, etcd, auth, registry, pilot, ca, locked down as `isthmus up`),
                           `bench-backend` in namespace bench-gw behind its sidecar (PeerAuthentication STRICT),
                           `isthmus gateway run --name istio-ingressgateway` with a Gateway (port 443 HTTPS, SIMPLE,
                           credentialName from `isthmus create secret tls`) and a VirtualService to bench-backend:
                           client --TLS--> gateway --auto mTLS (pooled)--> sidecar --> nginx
    HAProxy                the same path: an edge HAProxy (`bind ... ssl crt edge.pem`) originating TLS 1.3 with a
                           client certificate (`verify required`) to an HAProxy "sidecar" that requires and verifies
                           it (bench/dataplane/mtls.py's server side) in front of the same nginx

Both edges serve the same ECDSA P-256 certificate, issue no TLS session tickets (the gateway's contexts set
num_tickets 0; HAProxy `no-tls-tickets`) and speak HTTP/1.1. Pinning as the data-plane benchmark's: every proxy
on the proxy core, nginx and the load generator on the load core, the control plane unpinned.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import ssl
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.dataplane.mtls import Certs, _tls_client_args, make_certs, start_haproxy_tls
from bench.dataplane.procstat import children
from bench.dataplane.topology import BODY, SERVICE, SERVICE_PORT, Pinning, Sidecar, _wait, start_nginx
from isthmus.launch import LaunchError, ManagedProcess, free_port, project_env, service_process, wait_ready
from isthmus.launch.secure import start_secure

GW_HOST = "bench.example.com"  # the Host (and SNI) clients use at either edge
GW_NAMESPACE = "bench-gw"
CREDENTIAL = "bench-gw-credential"

GATEWAY_CONFIG = f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench-gateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    tls: {{mode: SIMPLE, credentialName: {CREDENTIAL}}}
    hosts: ["*"]  # any SNI: wrk sends the URL's address (127.0.0.1) as its SNI
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench-edge, namespace: {GW_NAMESPACE}}}
spec:
  hosts: [{GW_HOST}]
  gateways: [istio-system/bench-gateway]
  http:
  - route:
    - destination: {{host: {SERVICE}, port: {{number: {SERVICE_PORT}}}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {GW_NAMESPACE}}}
spec:
  mtls: {{mode: STRICT}}
"""

HAPROXY_EDGE = """\
# written by bench/gateway/topology.py: terminates the client's TLS, originates TLS 1.3 with a client certificate
global
    nbthread 1
    maxconn 4096
    stats socket {socket} mode 600
    # no session cache (and no tickets below): wrk resumes sessions when the server lets it, and the gateway,
    # which issues no tickets, never does; every new connection must be a full handshake at both edges
    tune.ssl.cachesize 0
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 60s
    option http-keep-alive
frontend edge
    bind 127.0.0.1:{port} ssl crt {edge} no-tls-tickets alpn http/1.1
    default_backend sidecar
backend sidecar
    http-reuse always
    server sidecar 127.0.0.1:{upstream} {tls} no-ssl-reuse
"""


def edge_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, both in one file for HAProxy): self-signed ECDSA P-256 for GW_HOST, valid one day."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GW_HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(GW_HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    crt, key_file, both = directory / "edge.crt", directory / "edge.key", directory / "edge.pem"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    both.write_bytes(crt.read_bytes() + key_file.read_bytes())
    for path in (key_file, both):
        path.chmod(0o600)
    return crt, key_file, both


def https_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # a throwaway self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path, headers={"Host": GW_HOST})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _https_ok(port: int) -> bool:
    status, body = https_get(port)
    return status == 200 and body == BODY


def start_haproxy_edge(work: Path, upstream: int, certs: Certs, edge_pem: Path,
                       pin: Pinning) -> tuple[ManagedProcess, int]:
    port = free_port()
    cfg = work / "haproxy-edge.cfg"
    cfg.write_text(HAPROXY_EDGE.format(socket=edge_socket(work), port=port, edge=edge_pem, upstream=upstream,
                                       tls=_tls_client_args(certs)))
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, timeout=10)
    if check.returncode != 0:
        raise LaunchError(f"haproxy rejected {cfg}:\n{check.stdout}{check.stderr}")
    proc = ManagedProcess("haproxy-edge", [*pin.prefix(pin.proxy_core), "haproxy", "-f", str(cfg), "-db"],
                          log_path=work / "logs" / "haproxy-edge.log")
    proc.start()
    return proc, port


def edge_socket(work: Path) -> Path:
    return work / "haproxy-edge.sock"


class GatewayTopology:
    """Everything the gateway benchmark drives; a context manager whose exit stops it all, even on error."""

    def __init__(self, work: Path, pin: Pinning) -> None:
        self.work, self.pin = work, pin
        self.processes: list[ManagedProcess] = []
        self.sidecar: Sidecar | None = None
        self.gateway_port = self.gateway_admin = self.haproxy_port = 0
        self.gateway: ManagedProcess | None = None
        self.haproxy_edge: ManagedProcess | None = None
        self.haproxy_sidecar: ManagedProcess | None = None

    def __enter__(self) -> "GatewayTopology":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _add(self, proc: ManagedProcess) -> ManagedProcess:
        self.processes.append(proc)
        return proc

    def start(self, timeout: float = 60.0) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        nginx, nginx_port = start_nginx(self.work, self.pin)
        self._add(nginx)
        certs = make_certs(self.work / "tls")
        crt, key, both = edge_certificate(self.work / "tls")
        prefix = self.pin.prefix(self.pin.proxy_core)
        side, side_port, _ = start_haproxy_tls(self.work, "haproxy-tls-server", nginx_port, certs, prefix, False)
        self.haproxy_sidecar = self._add(side)
        edge, self.haproxy_port = start_haproxy_edge(self.work, side_port, certs, both, self.pin)
        self.haproxy_edge = self._add(edge)
        _wait(lambda: _https_ok(self.haproxy_port), "nginx's body through the HAProxy edge", 10, edge)

        mesh = self.work / "mesh"
        plane = start_secure(mesh, unsafe_no_fsync=True)
        self._add(plane.nats), self._add(plane.etcd)
        nats_url, etcd_url = plane.nats.url or "", plane.etcd.url or ""
        services = {name: self._add(service_process(name, nats_url, etcd_url, mesh, credentials=plane.creds).start())
                    for name in ("auth", "registry", "pilot", "ca")}
        self.sidecar = Sidecar(mesh, plane.operator_config, nats_url, SERVICE, nginx_port, f"app={SERVICE},version=v1",
                               self.pin, namespace=GW_NAMESPACE)
        self._add(self.sidecar.process.start())
        self.gateway_port, self.gateway_admin = free_port(), free_port()
        cli = [sys.executable, "-m", "isthmus.cli", "--config", str(plane.operator_config), "--nats", nats_url]
        self.gateway = self._add(ManagedProcess("gateway", [
            *prefix, *cli, "gateway", "run", "--name", "istio-ingressgateway", "--port", f"{self.gateway_port}:443",
            "--listen-host", "127.0.0.1", "--admin-port", str(self.gateway_admin), "--log-level", "warning"],
            log_path=mesh / "logs" / "gateway.log", env=project_env()).start())
        asyncio.run(self._configure(nats_url, plane.creds.client_config("operator", nats_url).nats, services, timeout))
        made = subprocess.run([*cli, "create", "secret", "tls", CREDENTIAL, "-n", "istio-system", "--cert", str(crt),
                               "--key", str(key)], capture_output=True, text=True, timeout=60, env=project_env())
        if made.returncode != 0:
            raise LaunchError(f"isthmus create secret tls failed:\n{made.stdout}{made.stderr}")
        sidecar, gateway = self.sidecar, self.gateway
        _wait(sidecar.ready, "bench-backend's sidecar /ready", timeout, sidecar.process)
        _wait(lambda: self.gateway_admin_get("/ready")[0] == 200, "gateway /ready", timeout, gateway)
        _wait(lambda: _https_ok(self.gateway_port), "nginx's body through the Isthmus gateway", timeout, gateway)

    async def _configure(self, nats_url: str, operator: object, services: dict[str, ManagedProcess],
                         timeout: float) -> None:
        from runtime import bus as busmod

        bus = await busmod.connect(nats_url, "bench-gateway", auth=operator)
        try:
            for name, proc in services.items():
                await wait_ready(bus, name, timeout, process=proc)
            reply = json.loads(await bus.request("isthmus.config.apply", GATEWAY_CONFIG.encode(), timeout=10))
            if not reply.get("ok"):
                raise LaunchError(f"config apply refused the gateway benchmark's config: {reply}")
        finally:
            await bus.close()

    def gateway_admin_get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.gateway_admin, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def gateway_tls(self) -> dict[str, int]:
        """The gateway's TLS acceptor counters on its 443 port (/server_info `tls`): tls, handshake_failed, ..."""
        info = json.loads(self.gateway_admin_get("/server_info")[1])
        return dict(next(iter(info["tls"].values())))

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(5)

    def pids(self) -> list[int]:
        """Every process we started and nginx's worker: the CPU that is ours."""
        found = []
        for proc in self.processes:
            if proc.pid is not None:
                found += [proc.pid, *children(proc.pid)]
        return found

    @property
    def rows(self) -> dict[str, tuple[int, list[tuple[str, int]]]]:
        """row name -> (the edge's TLS port, [(proxy role, pid)...])"""
        assert self.gateway is not None and self.sidecar is not None
        assert self.haproxy_edge is not None and self.haproxy_sidecar is not None
        return {
            "isthmus-gateway": (self.gateway_port, [("edge", self.gateway.pid or 0), ("sidecar", self.sidecar.pid)]),
            "haproxy-edge": (self.haproxy_port, [("edge", self.haproxy_edge.pid or 0),
                                                 ("sidecar", self.haproxy_sidecar.pid or 0)]),
        }

    def alive(self) -> None:
        for proc in self.processes:
            if not proc.is_running:
                raise RuntimeError(f"{proc.name} died during the gateway benchmark:\n{proc.log_tail()}")

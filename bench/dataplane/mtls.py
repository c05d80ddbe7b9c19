"""The mutual TLS rows' pieces (issue 10): the HAProxy TLS pair, its throwaway certificates, and the
Isthmus mTLS pair's config.

    make_certs(dir) -> Certs            a throwaway CA and two leaves, ECDSA P-256, made once per run
    start_haproxy_tls(work, name, ...)  HAProxy terminating (server) or originating (client) TLS 1.3
    MTLS_NAMESPACE, MTLS_CONFIG         the Isthmus mTLS pair's namespace and what is applied for it
    inbound_mtls(sidecar) -> dict       what the server sidecar's inbound listener accepted (tls, plaintext)

HAProxy TLS pair: the server side terminates TLS 1.3 requiring and verifying a client certificate
(`verify required`, the throwaway CA); the client side originates TLS 1.3 with its client certificate and
verifies the server's (`verify required`, `verifyhost bench-backend`). Keep-alive and `http-reuse always`
between the pair, as the plaintext HAProxy pair. The client side has a second frontend (`handshake_port`)
whose backend takes one request per connection (`option http-server-close`, `http-reuse never`) and never resumes
a TLS session (`no-ssl-reuse`): every request through it is a full handshake on both sides.

Isthmus mTLS pair: a second pair of sidecars in MTLS_NAMESPACE, where a namespace PeerAuthentication STRICT
overrides the mesh-wide DISABLE that keeps the plaintext rows plaintext (Istio: workload > namespace >
mesh). Auto mTLS makes the client sidecar originate ISTIO_MUTUAL with its workload certificate from the ca.
Requests whose path starts with /handshake go to the subset `fresh`, whose DestinationRule
connectionPool.http.maxRequestsPerConnection is 1: a new mutual TLS connection (a full handshake; the
sidecar does not resume sessions) per request, while the load generator's own connections stay open.
"""

from __future__ import annotations

import datetime
import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from isthmus.launch import LaunchError, ManagedProcess, free_port

MTLS_NAMESPACE = "bench-mtls"
HANDSHAKE_PATH = "/handshake"  # through either pair: one request per connection between the pair
SERVER_NAME = "bench-backend"  # the HAProxy server's certificate name, checked by the client side

MTLS_CONFIG = f"""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {MTLS_NAMESPACE}}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench-backend, namespace: {MTLS_NAMESPACE}}}
spec:
  hosts: [bench-backend]
  http:
  - match: [{{uri: {{prefix: {HANDSHAKE_PATH}}}}}]
    route:
    - destination: {{host: bench-backend, subset: fresh}}
  - route:
    - destination: {{host: bench-backend}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bench-backend, namespace: {MTLS_NAMESPACE}}}
spec:
  host: bench-backend
  subsets:
  - name: fresh
    labels: {{app: bench-backend}}
    trafficPolicy:
      connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}
"""


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA certificate (PEM)
    server: Path  # certificate + key (PEM), as HAProxy's `crt` takes them
    client: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certs(directory: Path) -> Certs:
    """A throwaway CA and a server and a client certificate signed by it, ECDSA P-256, valid one day."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("isthmus bench CA")).issuer_name(_name("isthmus bench CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: x509.ObjectIdentifier) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    certs = Certs(directory / "ca.pem", directory / "server.pem", directory / "client.pem")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.server.write_bytes(leaf(SERVER_NAME, ExtendedKeyUsageOID.SERVER_AUTH))
    certs.client.write_bytes(leaf("bench-client", ExtendedKeyUsageOID.CLIENT_AUTH))
    for path in (certs.server, certs.client):
        path.chmod(0o600)
    return certs


HAPROXY_TLS_SERVER = """\
# written by bench/dataplane/mtls.py: terminates TLS 1.3, client certificate required and verified
global
    nbthread 1
    maxconn 4096
    stats socket {socket} mode 600
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:{port} ssl crt {certs.server} ca-file {certs.ca} verify required ssl-min-ver TLSv1.3
    default_backend be
backend be
    server upstream 127.0.0.1:{upstream}
"""

HAPROXY_TLS_CLIENT = """\
# written by bench/dataplane/mtls.py: originates TLS 1.3 with a client certificate, verifies the server
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 60s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
frontend fe_handshake
    bind 127.0.0.1:{handshake_port}
    default_backend be_handshake
backend be
    http-reuse always
    # no resumption here either: the server side's reuse figure (process-wide) must count only full handshakes,
    # and the sidecars never resume; a pooled connection is opened rarely, so this costs the pooled row nothing
    server upstream 127.0.0.1:{upstream} {tls} no-ssl-reuse
backend be_handshake
    # one request per connection to the server side, no TLS session resumption: a full handshake each
    option http-server-close
    http-reuse never
    server upstream 127.0.0.1:{upstream} {tls} no-ssl-reuse
"""


def _tls_client_args(certs: Certs) -> str:
    return (f"ssl crt {certs.client} ca-file {certs.ca} verify required verifyhost {SERVER_NAME} "
            f"sni str({SERVER_NAME}) ssl-min-ver TLSv1.3")


def start_haproxy_tls(work: Path, name: str, upstream: int, certs: Certs, prefix: list[str],
                      client: bool) -> tuple[ManagedProcess, int, int]:
    """HAProxy's TLS server side (client=False) or client side: (process, port, handshake port or 0)."""
    port, handshake_port = free_port(), free_port() if client else 0
    cfg = work / f"{name}.cfg"
    text = (HAPROXY_TLS_CLIENT.format(port=port, handshake_port=handshake_port, upstream=upstream,
                                      tls=_tls_client_args(certs)) if client
            else HAPROXY_TLS_SERVER.format(port=port, upstream=upstream, certs=certs, socket=stats_socket(work)))
    cfg.write_text(text)
    check = ManagedProcess(f"{name}-check", ["haproxy", "-c", "-q", "-f", str(cfg)],
                           log_path=work / "logs" / f"{name}-check.log")
    check.start()
    if check.popen is not None and check.popen.wait(10) != 0:
        raise LaunchError(f"haproxy rejected {cfg}:\n{check.log_tail()}")
    proc = ManagedProcess(name, [*prefix, "haproxy", "-f", str(cfg), "-db"], log_path=work / "logs" / f"{name}.log")
    proc.start()
    return proc, port, handshake_port


def stats_socket(work: Path) -> Path:
    return work / "haproxy-tls-server.sock"


def haproxy_ssl_info(work: Path, path: Path | None = None) -> dict[str, int]:
    """The TLS server side's `show info` counters (or those of the HAProxy whose stats socket is `path`):
    CumSslConns (TLS connections accepted) and SslFrontendSessionReuse_pct (share of resumed sessions)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(path or stats_socket(work)))
        sock.sendall(b"show info\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    info = dict(line.split(": ", 1) for line in data.decode().splitlines() if ": " in line)
    return {key: int(info.get(key, "0") or 0) for key in ("CumSslConns", "SslFrontendSessionReuse_pct")}


class _Admin(Protocol):
    def admin(self, path: str) -> tuple[int, bytes]: ...


def inbound_mtls(sidecar: _Admin) -> dict[str, Any]:
    """The server sidecar's inbound listener counters (/server_info inbound_mtls): tls, plaintext, ..."""
    return dict(json.loads(sidecar.admin("/server_info")[1])["inbound_mtls"]["listeners"]["inbound"])


def check_mtls(before: dict[str, Any], after: dict[str, Any], requests: int, per_request: bool) -> dict[str, Any]:
    """What the server sidecar accepted while a row ran: mutual TLS only (no plaintext accepted or refused, no
    failed handshake) and, for the handshake run, at least 0.9 new TLS connections per request. A pooled row may
    open none (its connections can predate the row), but some must have been accepted by then. Raises
    RuntimeError when the traffic was not what the row claims; returns the row's counts."""
    seen = {key: int(after.get(key, 0)) - int(before.get(key, 0))
            for key in ("tls", "plaintext", "plaintext_refused", "handshake_failed")}
    if seen["plaintext"] or seen["plaintext_refused"] or seen["handshake_failed"] or not int(after.get("tls", 0)):
        raise RuntimeError(f"mTLS row: the server sidecar's inbound listener saw {seen} (total TLS {after.get('tls')})")
    if per_request and seen["tls"] < 0.9 * requests:
        raise RuntimeError(f"handshake row: {requests} requests but only {seen['tls']} new TLS connections")
    return {"mtls_connections": seen["tls"], "plaintext_connections": seen["plaintext"]}


def http_get_path(port: int, path: str, host: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()

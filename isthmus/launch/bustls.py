"""The bus's TLS material for `isthmus up --nats-tls`: a CA of its own and a server certificate for
127.0.0.1 and localhost (ECDSA P-256 with `cryptography`), under <state-dir>/nats/tls, keys mode 0600.
Made anew at every start (clients get the CA's path in their client config). This CA is the bus's only:
it is not the mesh's workload CA (services/ca), so rotating one never touches the other."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LIFETIME = datetime.timedelta(days=365)


def _name(org: str, common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ca_and_server(org: str, ca_name: str, server_name: str, dns_names: list[str], lifetime: datetime.timedelta,
                  ) -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA of its own (ECDSA P-256, path length 0) and a server certificate it signs for `dns_names` and
    127.0.0.1: (CA certificate, server certificate, server key). Used for the bus's TLS and the demo's gateway."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(org, ca_name)).issuer_name(_name(org, ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + lifetime)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server = (x509.CertificateBuilder().subject_name(_name(org, server_name)).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + lifetime)
              .add_extension(x509.SubjectAlternativeName(sans), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    return ca, server, key


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create or replace `path` with `data`, mode set before anything is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def make_bus_tls(state_dir: str | Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server-key.pem) under state_dir/nats/tls."""
    out = Path(state_dir) / "nats" / "tls"
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    ca, server, key = ca_and_server("Isthmus bus", "Isthmus bus CA", "nats-server", ["localhost"], LIFETIME)
    paths = out / "ca.pem", out / "server.pem", out / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_private(paths[2], key_pem(key))
    return paths

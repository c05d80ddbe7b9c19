"""Test helpers: a server certificate for a gateway (SANs, validity chosen), signed by a small CA, as PEM."""

from __future__ import annotations

import datetime
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _pem_key(key: object) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption()).decode()


def server(hosts: tuple[str, ...] = ("httpbin.example.com",), days: float = 90, rsa_bits: int = 0,
           start_days: float = -1) -> tuple[str, str, str]:
    """(chain PEM: leaf then CA, key PEM, CA PEM) for a leaf naming `hosts`, valid from now+start_days for `days`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "example Inc."),
                         x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=2))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key: object = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
    start = now + datetime.timedelta(days=start_days)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key())  # type: ignore[attr-defined]
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem).decode()
    return leaf.public_bytes(pem).decode() + ca_pem, _pem_key(key), ca_pem


def key_body(key_pem: str) -> str:
    """The base64 body of a PEM key (what must never appear anywhere but the gateway's memory)."""
    return "".join(line for line in key_pem.splitlines() if not line.startswith("-----"))

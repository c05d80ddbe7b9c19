"""A workload certificate chain with its private key: parsed and checked once when it arrives, then held.

Errors: MaterialError (ValueError) when a chain cannot be read, does not match its key, or names another
identity than the one asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from proxy.identity.keys import PrivateKey
from proxy.identity.spiffe import cert_spiffe_ids


class MaterialError(ValueError):
    pass


def load_chain(pems: list[str]) -> list[x509.Certificate]:
    """Certificates from PEM texts (each may hold several); MaterialError when none or one is unreadable."""
    certs: list[x509.Certificate] = []
    for text in pems:
        try:
            certs.extend(x509.load_pem_x509_certificates(text.encode()))
        except ValueError as exc:
            raise MaterialError(f"a certificate cannot be read: {exc}") from None
    if not certs:
        raise MaterialError("no certificate")
    return certs


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Material:
    """Key, chain (leaf first, intermediates after, no root) and what /certs and the scheduler read of
    them. Times are Unix seconds."""

    key: PrivateKey
    chain: list[x509.Certificate]
    spiffe_id: str = field(init=False)
    serial: str = field(init=False)  # hex, as Envoy's /certs shows it
    not_before: float = field(init=False)
    not_after: float = field(init=False)

    def __post_init__(self) -> None:
        leaf = self.chain[0]
        ids = cert_spiffe_ids(leaf)
        object.__setattr__(self, "spiffe_id", ids[0] if ids else "")
        object.__setattr__(self, "serial", format(leaf.serial_number, "x"))
        object.__setattr__(self, "not_before", leaf.not_valid_before_utc.timestamp())
        object.__setattr__(self, "not_after", leaf.not_valid_after_utc.timestamp())

    @classmethod
    def build(cls, key: PrivateKey, chain_pem: list[str], expected_id: str) -> "Material":
        """MaterialError when the leaf's public key is not `key`'s or its SPIFFE ID is not `expected_id`."""
        chain = load_chain(chain_pem)
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if chain[0].public_key().public_bytes(serialization.Encoding.DER, public) != \
                key.public_key().public_bytes(serialization.Encoding.DER, public):
            raise MaterialError("the certificate is not for our key")
        material = cls(key, chain)
        if material.spiffe_id != expected_id:
            raise MaterialError(f"the certificate is for {material.spiffe_id or 'no SPIFFE ID'}, "
                                f"this workload is {expected_id}")
        return material

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def expired(self, now: float) -> bool:
        return now >= self.not_after

    def chain_pem(self) -> list[str]:
        return [pem(cert) for cert in self.chain]

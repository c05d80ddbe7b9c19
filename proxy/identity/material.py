"""A workload certificate chain with its private key, as the sidecar holds them: PEM texts and the fields the
X.509 worker child parsed and checked once when they arrived (x509_client.py). No `cryptography` here.

Errors: MaterialError (ValueError) when a key, chain or root cannot be read, a chain does not match its key, or
names another identity than the one asked for (the worker's words).
"""

from __future__ import annotations

from dataclasses import dataclass

from proto.identity_worker import CertFields, ChainChecked
from proxy.identity.spiffe import PREFIX


class MaterialError(ValueError):
    pass


@dataclass(frozen=True)
class Material:
    """Key (PKCS#8 PEM), chain (one PEM per certificate, leaf first, intermediates after, no root) and the chain's
    parsed fields, which /certs, the debug subject and the scheduler read. Times are Unix seconds."""

    key_pem: str
    chain_pem: list[str]
    chain: list[CertFields]

    @property
    def leaf(self) -> CertFields:
        return self.chain[0]

    @property
    def spiffe_id(self) -> str:
        """The leaf's SPIFFE ID (the worker checked it is the one asked for)."""
        return next((uri for uri in self.leaf.uris if uri.startswith(PREFIX)), "")

    @property
    def serial(self) -> str:
        return self.leaf.serial  # hex, as Envoy's /certs shows it

    @property
    def not_before(self) -> float:
        return self.leaf.not_before

    @property
    def not_after(self) -> float:
        return self.leaf.not_after

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before

    def expired(self, now: float) -> bool:
        return now >= self.not_after


@dataclass(frozen=True)
class Checked:
    """What a chain check found: the material, the roots it was checked against (parsed; unreadable texts left
    out) and the fingerprint of the root among them that issued the chain's top ("" none)."""

    material: Material
    roots: list[CertFields]
    issuer: str = ""

    @classmethod
    def of(cls, key_pem: str, reply: ChainChecked) -> "Checked":
        return cls(Material(key_pem, list(reply.chain_pem), list(reply.chain)), list(reply.roots), reply.issuer)

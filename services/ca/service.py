"""The mesh CA (Istio's Citadel). Today it holds the mesh root and serves the trust bundle;
CSR signing and bootstrap tokens come with the mTLS issue.

The root key and certificate live in etcd (/isthmus/ca/root), created once by whichever replica
gets there first (create-if-absent), so every replica serves the same root.
"""

from __future__ import annotations

import datetime
from typing import ClassVar

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proto.base import Message
from proto.subjects import CA_BUNDLE, QUEUE_CA
from runtime.bus import encode
from runtime.service import ServiceProcess

ROOT_KEY = "/isthmus/ca/root"
ROOT_LIFETIME = datetime.timedelta(days=3650)


class CaRoot(Message):
    cert_pem: str
    key_pem: str


class TrustBundle(Message):
    trust_domain: str
    roots_pem: list[str]


def new_root(trust_domain: str) -> CaRoot:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Isthmus mesh root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CaRoot(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode(),
    )


class CaService(ServiceProcess):
    name: ClassVar[str] = "ca"
    trust_domain: ClassVar[str] = "cluster.local"

    async def start(self) -> None:
        created = new_root(self.trust_domain)
        await self.store.create_if_absent(ROOT_KEY, encode(created), 0)
        entry = await self.store.get(ROOT_KEY)
        assert entry is not None  # just created or already there
        self.root = msgspec.json.decode(entry.value, type=CaRoot)
        await self.bus.serve(CA_BUNDLE, self._bundle, queue=QUEUE_CA)

    async def _bundle(self, _: bytes) -> bytes:
        return encode(TrustBundle(trust_domain=self.trust_domain, roots_pem=[self.root.cert_pem]))

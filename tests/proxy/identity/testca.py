"""A CA made in the test with `cryptography`, for unit tests of the proxy's identity logic (the real ca
service is used by tests/integration/test_identity.py). Its material is checked in-process by the code the
X.509 worker child runs (proxy/identity/x509_read.py), so tests that only need a certificate start no child."""

from __future__ import annotations

import datetime
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.identity.keys import PrivateKey, key_pem, new_key
from proxy.identity.material import Checked, Material
from proxy.identity.x509_read import check_chain, pem

UTC = datetime.timezone.utc


class TestCa:
    __test__ = False  # not a test class

    def __init__(self, name: str = "test root", not_before: float | None = None) -> None:
        self.key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        start = datetime.datetime.fromtimestamp(not_before if not_before is not None else time.time() - 60, UTC)
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = pem(self.cert)

    def sign_csr(self, csr_pem: str, identity: str, ttl: float = 3600, start: float | None = None) -> str:
        """A leaf for the CSR's key with `identity` as URI SAN (whatever the CSR asked), valid from `start`."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        return self.sign_key(csr.public_key(), identity, ttl, start)  # type: ignore[arg-type]

    def sign_key(self, public_key: ec.EllipticCurvePublicKey, identity: str, ttl: float = 3600,
                 start: float | None = None) -> str:
        begin = datetime.datetime.fromtimestamp(start if start is not None else time.time() - 1, UTC)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.cert.subject)
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(begin).not_valid_after(begin + datetime.timedelta(seconds=ttl))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        return pem(cert)

    def material(self, identity: str, ttl: float = 3600, start: float | None = None,
                 key: PrivateKey | None = None) -> Material:
        return self.checked(identity, ttl, start, key).material

    def checked(self, identity: str, ttl: float = 3600, start: float | None = None, key: PrivateKey | None = None,
                roots_pem: list[str] | None = None) -> Checked:
        """A leaf for `key` (a new one by default) checked as the agent has it checked, against `roots_pem`
        (this CA's root by default)."""
        key = key or new_key()
        chain = [self.sign_key(key.public_key(), identity, ttl, start)]
        reply = check_chain(key, chain, identity, [self.pem] if roots_pem is None else roots_pem)
        return Checked.of(key_pem(key).decode(), reply)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


def key_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

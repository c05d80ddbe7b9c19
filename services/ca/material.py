"""The ca's keys on disk: <state-dir>/ca/ (mode 0700), one pair of files per root the ca made:

    <state-dir>/ca/lock                      flock(2) held while a replica creates or rotates a root
    <state-dir>/ca/<fingerprint>.key.pem     the root's private key, PKCS#8, mode 0600
    <state-dir>/ca/<fingerprint>.cert.pem    its certificate (public), mode 0600 as well
    <state-dir>/ca/kek                       `isthmus up --ca-kek`: the KEK (runtime/kek.py), mode 0600

Keys never go on the bus, nor into etcd in the clear: etcd holds the certificates and which one signs
(CaState) and, only with the operator's KEK, the signing key sealed (sealed.py).
Several ca replicas on one machine share the directory; they serialize creation with the lock file, and
each file is written to a temporary name (create-exclusive), fsynced, then renamed into place, so a
reader never sees half a key. Replicas on other machines need the KEK (they open the sealed key from
etcd and keep it in memory), a copy of this directory, or the same plug-in CA files.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT_LIFETIME = datetime.timedelta(days=3650)  # Istio's self-signed root: 10 years (citadel's default)


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def new_root(trust_domain: str, now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed ECDSA P-256 root for the mesh (O=<trust domain>, as Istio's self-signed root)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Isthmus mesh root {now:%Y-%m-%dT%H:%M:%SZ}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


class Material:
    """The directory of one machine's ca replicas."""

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir).resolve() / "ca"

    def prepare(self) -> None:
        """Create the directory (0700) or tighten it: a key directory others can list is a finding."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the directory's lock (waiting in a thread, so the event loop keeps serving)."""
        self.prepare()
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a replica of ours that died mid-write
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def save(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> str:
        """Write a root's key and certificate (call under locked()); returns its fingerprint."""
        fp = fingerprint(cert)
        self._write(self.dir / f"{fp}.key.pem", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self._write(self.dir / f"{fp}.cert.pem", cert.public_bytes(serialization.Encoding.PEM))
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the renames survive a crash
        finally:
            os.close(dir_fd)
        return fp

    def discard(self, fp: str) -> None:
        """Delete a root's files (call under locked()): one saved for a rotation the bundle then refused."""
        for path in (self.dir / f"{fp}.key.pem", self.dir / f"{fp}.cert.pem"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def load(self, fp: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        """The root named fp, None when this machine does not hold its key; ValueError if the files are
        damaged or do not belong together."""
        key_path, cert_path = self.dir / f"{fp}.key.pem", self.dir / f"{fp}.cert.pem"
        try:
            key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
        except FileNotFoundError:
            return None
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or fingerprint(cert) != fp \
                or key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError(f"{key_path} and {cert_path} do not belong together")
        if os.stat(key_path).st_mode & 0o077:
            os.chmod(key_path, 0o600)
        return cert, key

"""The workload's key pair, its CSR and the renewal proof, with `cryptography`: in the X.509 worker child only
(x509_worker.py), never in the long-lived sidecar.

The key is ECDSA P-256 (what Istio's agent makes by default, ECC_SIGNATURE_ALGORITHM=ECDSA), made on this
host in the sidecar's own child process; it reaches the sidecar over that child's stdout pipe, and leaves
the sidecar only into its own state directory (state_dir.py) and, for the time a `load_cert_chain` takes, a
private 0700 directory (tls.py). A new key is made for every certificate.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(key: PrivateKey, identity: str) -> str:
    """A PKCS#10 CSR (PEM) with `identity` as its only URI SAN and no subject: the ca signs only what the
    proof entitles, so the CSR's names are a request, never a claim."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def proof_signature(current_key: PrivateKey, csr: str) -> bytes:
    """The renewal proof of proto/ca.py: ECDSA-SHA256 over the CSR's DER bytes, made with the key of the
    certificate that proves who we are (not the CSR's new key)."""
    der = x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER)
    return current_key.sign(der, ec.ECDSA(hashes.SHA256()))


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: only ever sent to the parent sidecar over a pipe, and written by it to 0600 files
    in 0700 directories."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes) -> PrivateKey:
    """ValueError when `pem` is not an EC private key."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the stored key is not an ECDSA key")
    return key

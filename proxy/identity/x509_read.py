"""Certificates read with `cryptography`, in the X.509 worker child only (x509_worker.py): never imported by the
long-lived sidecar, which holds the CertFields this module returns.

    load_chain(pems) -> [x509.Certificate]                     MaterialError: none, or one unreadable
    cert_fields(cert) -> CertFields                            subject, serial, validity, SANs, fingerprint
    check_chain(key, chain_pem, expected_id, roots_pem) -> ChainChecked
                                                               MaterialError: not for `key`, or another identity
    read_roots(roots_pem, chain_pem) -> RootsRead              MaterialError: a root cannot be read
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from proto.identity_worker import CertFields, ChainChecked, RootsRead
from proxy.identity.keys import PrivateKey
from proxy.identity.material import MaterialError
from proxy.identity.spiffe import PREFIX


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


def _readable(pems: list[str]) -> list[x509.Certificate]:
    """The certificates of the texts that can be read; the others are left out."""
    certs: list[x509.Certificate] = []
    for text in pems:
        try:
            certs.extend(x509.load_pem_x509_certificates(text.encode()))
        except ValueError:
            continue
    return certs


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_spiffe_ids(cert: x509.Certificate) -> list[str]:
    """The certificate's URI SANs that are SPIFFE IDs (a workload certificate from the ca holds exactly one)."""
    return [uri for uri in _sans(cert, x509.UniformResourceIdentifier) if uri.startswith(PREFIX)]


def _sans(cert: x509.Certificate, kind: type) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(value) for value in san.get_values_for_type(kind)]


def cert_fields(cert: x509.Certificate) -> CertFields:
    return CertFields(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                      serial=format(cert.serial_number, "x"), not_before=cert.not_valid_before_utc.timestamp(),
                      not_after=cert.not_valid_after_utc.timestamp(),
                      fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
                      uris=_sans(cert, x509.UniformResourceIdentifier), dns=_sans(cert, x509.DNSName),
                      ips=_sans(cert, x509.IPAddress))


def issuer_of(top: x509.Certificate, roots: list[x509.Certificate]) -> str:
    """The fingerprint of the root that directly issued `top` (its signature verifies), or ""."""
    for root in roots:
        if root.subject != top.issuer:
            continue
        try:
            top.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return root.fingerprint(hashes.SHA256()).hex()
    return ""


def _spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_chain(key: PrivateKey, chain_pem: list[str], expected_id: str, roots_pem: list[str]) -> ChainChecked:
    """MaterialError when the chain cannot be read, its leaf's public key is not `key`'s, or its SPIFFE ID is not
    `expected_id`. Roots that cannot be read are left out (the ca's SignReply names them; a bundle's are checked
    by read_roots)."""
    chain = load_chain(chain_pem)
    if _spki(chain[0].public_key()) != _spki(key.public_key()):
        raise MaterialError("the certificate is not for our key")
    ids = cert_spiffe_ids(chain[0])
    found = ids[0] if ids else ""
    if found != expected_id:
        raise MaterialError(f"the certificate is for {found or 'no SPIFFE ID'}, this workload is {expected_id}")
    roots = _readable(roots_pem)
    return ChainChecked(chain=[cert_fields(cert) for cert in chain], chain_pem=[pem(cert) for cert in chain],
                        roots=[cert_fields(root) for root in roots], issuer=issuer_of(chain[-1], roots))


def read_roots(roots_pem: list[str], chain_pem: list[str]) -> RootsRead:
    """Every root of a bundle; MaterialError when one cannot be read (a bad publish must not empty the trust held).
    `chain_pem` (may be empty): the chain held, whose top's issuer among the roots is named."""
    roots = load_chain(roots_pem)
    chain = _readable(chain_pem)
    return RootsRead(roots=[cert_fields(root) for root in roots],
                     issuer=issuer_of(chain[-1], roots) if chain else "")

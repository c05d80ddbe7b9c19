"""Issuing workload certificates, and checking a renewal proof: pure functions, no I/O (tested alone).

    SignRefused(reason)                 what a requester did wrong, worded so they can fix it
    spiffe_id(td, ns, sa) -> str        spiffe://<td>/ns/<ns>/sa/<sa>
    parse_spiffe(uri, td) -> (ns, sa)   SignRefused unless it is an identity of trust domain td
    load_csr(pem) -> CSR                the CSR's self-signature verified, its key P-256 or RSA >= 2048
    issue(authority, csr, spiffe, ttl, now) -> Certificate
    verify_proof(chain, signature, csr_der, roots, td, now) -> spiffe id of the proof's leaf

The certificate follows Istio's workload certificates (security/pkg/pki/util/generate_cert.go): an empty
subject, the SPIFFE ID as the only SAN (a URI, critical because the subject is empty: RFC 5280 4.2.1.6),
keyUsage digitalSignature+keyEncipherment (critical), extKeyUsage serverAuth+clientAuth, CA:FALSE.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from proto.subjects import identity_name_error

MIN_TTL = 60  # seconds: the shortest certificate the ca issues (Istio's minimum workload cert TTL is similar)
BACKDATE = datetime.timedelta(seconds=60)  # not_before this far back: hosts' clocks differ a little


class SignRefused(Exception):
    """The request cannot be signed; str(exc) is the reason sent back (never a secret)."""


@dataclass(frozen=True)
class Authority:
    """What signs: the signing certificate and key, the certificates between it and the root (excluded)
    that every issued chain carries, and the root it chains to."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    intermediates: tuple[x509.Certificate, ...]  # signing cert's issuers below the root; empty for a root
    root: x509.Certificate

    @property
    def chain(self) -> list[x509.Certificate]:
        """The certificates sent after an issued leaf: the signer (unless it is the root) and intermediates."""
        return ([] if self.cert == self.root else [self.cert]) + list(self.intermediates)


def clamp_ttl(asked: int, default: int, maximum: int) -> int:
    """The lifetime granted: `asked` (0: `default`) within [MIN_TTL, maximum] seconds."""
    return max(MIN_TTL, min(asked or default, maximum))


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def parse_spiffe(uri: str, trust_domain: str) -> tuple[str, str]:
    """(namespace, service account) of a workload identity in trust_domain; SignRefused otherwise."""
    prefix = f"spiffe://{trust_domain}/ns/"
    rest = uri[len(prefix):] if uri.startswith(prefix) else ""
    parts = rest.split("/")
    if len(parts) != 3 or parts[1] != "sa" or identity_name_error(parts[0], parts[2]):
        raise SignRefused(f"{uri[:300]!r} is not a workload identity of trust domain {trust_domain} "
                          f"(spiffe://{trust_domain}/ns/<namespace>/sa/<service-account>)")
    return parts[0], parts[2]


def check_identity(namespace: str, service_account: str) -> None:
    """SignRefused unless the names can make an identity (proto/subjects.py identity_name_error)."""
    problem = identity_name_error(namespace, service_account)
    if problem:
        raise SignRefused(problem)


def _check_key(key: object, what: str) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignRefused(f"{what} uses curve {key.curve.name}; use ECDSA P-256 (or RSA of at least 2048 bits)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SignRefused(f"{what} is RSA {key.key_size} bits; use ECDSA P-256 or RSA of at least 2048 bits")
    else:
        raise SignRefused(f"{what} is a {type(key).__name__.removeprefix('_')}; use ECDSA P-256 or RSA >= 2048")


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """The CSR, its self-signature checked (the requester holds the key) and its key type allowed."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise SignRefused("csr_pem is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)") from None
    try:
        valid = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as exc:
        raise SignRefused(f"the CSR cannot be read: {exc}") from None
    if not valid:
        raise SignRefused("the CSR's signature does not verify with its own key")
    _check_key(key, "the CSR's key")
    return csr


def issue(authority: Authority, csr: x509.CertificateSigningRequest, identity: str, ttl: int,
          now: datetime.datetime) -> x509.Certificate:
    """A workload certificate for csr's key, valid from now (backdated a minute) for ttl seconds, naming
    only `identity`; whatever names or extensions the CSR asked for are ignored."""
    public = csr.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(authority.cert.subject)
        .public_key(public)  # type: ignore[arg-type]  # checked by load_csr
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(seconds=ttl))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    return builder.sign(authority.key, hashes.SHA256())


def uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


def _in_force(cert: x509.Certificate, now: datetime.datetime, what: str) -> None:
    if now >= cert.not_valid_after_utc:
        raise SignRefused(f"{what} expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z; get a new "
                          "certificate with a bootstrap token (isthmus token create)")
    if now < cert.not_valid_before_utc:
        raise SignRefused(f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z")


def verify_proof(chain_pem: list[str], signature: bytes, csr_der: bytes, roots: list[x509.Certificate],
                 trust_domain: str, now: datetime.datetime) -> str:
    """The SPIFFE ID the renewal proof entitles: the leaf chains (signatures, validity, CA flags) to one of
    `roots`, is unexpired, names one identity of trust_domain, and `signature` is ECDSA-SHA256 (or RSA
    PKCS#1 v1.5 SHA-256) over csr_der made with the leaf's key. SignRefused otherwise."""
    if not chain_pem or not signature:
        raise SignRefused("a renewal needs both proof_chain_pem and proof_signature")
    try:
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain_pem]
    except ValueError:
        raise SignRefused("proof_chain_pem holds something that is not a PEM certificate") from None
    leaf = chain[0]
    if _is_ca(leaf):
        raise SignRefused("the proof's first certificate is a CA, not a workload certificate")
    _in_force(leaf, now, "the proof's certificate")
    for cert in chain[1:]:
        if not _is_ca(cert):
            raise SignRefused("an intermediate in proof_chain_pem is not a CA certificate")
        _in_force(cert, now, "an intermediate of the proof's chain")
    for child, issuer in zip(chain, chain[1:]):
        _check_issued(child, issuer)
    top = chain[-1]
    if not any(_issued_by(top, root) for root in roots if now < root.not_valid_after_utc):
        raise SignRefused("the proof's certificate does not chain to a root in the current trust bundle")
    identities = uri_sans(leaf)
    if len(identities) != 1:
        raise SignRefused(f"the proof's certificate names {len(identities)} URIs; a workload certificate names one")
    parse_spiffe(identities[0], trust_domain)
    key = leaf.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, csr_der, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, csr_der, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise SignRefused("the proof's certificate has a key that cannot sign the proof")
    except InvalidSignature:
        raise SignRefused("proof_signature does not verify: sign the CSR's DER bytes with the current "
                          "certificate's key (ECDSA-SHA256)") from None
    return identities[0]


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_issued(child: x509.Certificate, issuer: x509.Certificate) -> None:
    if not _issued_by(child, issuer):
        raise SignRefused("proof_chain_pem is not a chain: a certificate is not signed by the next one")


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()

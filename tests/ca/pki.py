"""Test helpers: keys, CSRs, renewal proofs and small CAs made with `cryptography`, as a proxy would."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc)


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr(private_key: object | None = None, uris: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> tuple[str, object]:
    """(CSR PEM, its key); the CSR may ask for names the ca must ignore."""
    private_key = private_key or key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asker")]))
    names = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    request = builder.sign(private_key, hashes.SHA256())  # type: ignore[arg-type]
    return request.public_bytes(serialization.Encoding.PEM).decode(), private_key


def proof_signature(private_key: ec.EllipticCurvePrivateKey, csr_pem: str) -> bytes:
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    return private_key.sign(der, ec.ECDSA(hashes.SHA256()))


def ca_cert(name: str, signing_key: object, public_key: object, issuer: x509.Name | None = None,
            now: datetime.datetime = NOW, ca: bool = True, days: int = 365) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
        .public_key(public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]
    )


def pem(obj: object) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)

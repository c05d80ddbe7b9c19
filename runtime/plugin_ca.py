"""An operator's CA material for the mesh ca (Istio's "plug in CA certificates": ca-cert.pem, ca-key.pem,
root-cert.pem, cert-chain.pem; istio.io/latest/docs/tasks/security/cert-management/plugin-ca-cert/).

Read by `isthmus up` (to refuse bad files before anything starts) and by the ca (to sign with them), so
it lives here, below both.

    load_plugin_ca(cert, key, root, chain) -> PluginCa     ValueError naming the file and what is wrong

The signing certificate must be a CA (basicConstraints CA:TRUE, keyCertSign), its key must match it, and
it must chain to the root through cert-chain's certificates (each signature checked). Keys: ECDSA P-256/
P-384 or RSA >= 2048.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from runtime.files import read_bounded

MAX_PEM_FILE = 1 << 20  # bytes; a CA file is a few KiB


@dataclass(frozen=True)
class PluginCa:
    cert: x509.Certificate  # the ca's signing certificate (an intermediate under the operator's root)
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    intermediates: list[x509.Certificate]  # from cert-chain, between cert and root (may be empty)
    root: x509.Certificate


def _read(flag: str, path: str) -> bytes:
    try:
        data = read_bounded(path, MAX_PEM_FILE)  # /dev/zero ends at the bound; a FIFO is refused
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_FILE:
        raise ValueError(f"{flag} {path}: larger than {MAX_PEM_FILE} bytes; is it a PEM file?")
    return data


def _certs(flag: str, path: str) -> list[x509.Certificate]:
    data = _read(flag, path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{flag} {path}: holds no PEM certificate") from None
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    try:
        usage = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
        signs = usage.key_cert_sign
    except x509.ExtensionNotFound:
        signs = True  # RFC 5280 allows a CA without keyUsage
    return bool(constraints.ca) and signs


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def load_plugin_ca(cert_path: str, key_path: str, root_path: str, chain_path: str = "",
                   now: datetime.datetime | None = None) -> PluginCa:
    """The checked material; ValueError with one line a user can act on (the flag, the file, the fault)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cert = _certs("--plugin-ca-cert", cert_path)[0]
    roots = _certs("--plugin-root-cert", root_path)
    root = roots[0]
    try:
        key = serialization.load_pem_private_key(_read("--plugin-ca-key", key_path), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--plugin-ca-key {key_path}: not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
            raise ValueError(f"--plugin-ca-key {key_path}: curve {key.curve.name}; use P-256 or P-384")
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError(f"--plugin-ca-key {key_path}: RSA {key.key_size} bits; use at least 2048")
    else:
        raise ValueError(f"--plugin-ca-key {key_path}: a {type(key).__name__}; use ECDSA or RSA")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError(f"--plugin-ca-key {key_path} does not match the certificate in --plugin-ca-cert {cert_path}")
    if not _is_ca(cert):
        raise ValueError(f"--plugin-ca-cert {cert_path} ({_subject(cert)}) is not a CA certificate "
                         "(needs basicConstraints CA:TRUE and keyCertSign)")
    for flag, path, each in (("--plugin-ca-cert", cert_path, cert), ("--plugin-root-cert", root_path, root)):
        if each.not_valid_after_utc <= now:
            raise ValueError(f"{flag} {path} ({_subject(each)}) expired at {each.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z")
    chain = _certs("--plugin-cert-chain", chain_path) if chain_path else []
    # Istio's cert-chain.pem starts with ca-cert itself and may end with the root: keep what lies between
    intermediates = [c for c in chain if c != cert and c != root]
    path = [cert, *intermediates, root]
    for child, issuer in zip(path, path[1:]):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            where = f" through --plugin-cert-chain {chain_path}" if chain_path else ""
            raise ValueError(f"--plugin-ca-cert {cert_path} does not chain to --plugin-root-cert {root_path}{where}: "
                             f"{_subject(child)} is not signed by {_subject(issuer)}") from None
    if not _is_ca(root):
        raise ValueError(f"--plugin-root-cert {root_path} ({_subject(root)}) is not a CA certificate")
    return PluginCa(cert=cert, key=key, intermediates=intermediates, root=root)

"""Checking a TLS secret before the ca stores it (pure: no I/O). Istio's rules for a credentialName secret
(istio.io/latest/docs/tasks/traffic-management/ingress/secure-ingress/; kubectl create secret tls):

    check(put, now) -> (SecretInfo, warnings)      SecretRefused: one line, never the key's bytes

- the name is a DNS-1123 subdomain, the namespace a DNS-1123 label (Kubernetes' object names);
- kubernetes.io/tls: the chain parses (PEM certificates, leaf first), the key parses (PEM, unencrypted:
  Envoy cannot use an encrypted one) and matches the leaf's public key; the CA bundle, if any, parses;
- Opaque (`create secret generic NAME-cacert --from-file=ca.crt=...`): only a CA bundle, and the name
  ends in `-cacert` (Istio's companion of a MUTUAL server's credentialName);
- an expired or not-yet-valid leaf is accepted with a warning: kubectl stores it and Envoy (so Istio's
  gateways) serves it; refusing it would stop an operator replacing one expired certificate with another
  chain they have not yet renewed, and a warning tells them what clients will see.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from proto.secrets import CACERT_SUFFIX, SECRET_TYPE_OPAQUE, SECRET_TYPE_TLS, SecretInfo, TlsSecretPut
from proto.subjects import identity_name_error

MAX_CHAIN_CERTS = 10  # a leaf and its intermediates (Envoy has no limit; more is a mistake, not a chain)
MAX_CA_CERTS = 200  # client CAs of one MUTUAL server
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PEM_CERT = "-----BEGIN CERTIFICATE-----"


class SecretRefused(Exception):
    """Why a secret is not stored (one line; never echoes the key)."""


def name_error(namespace: str, name: str) -> str:
    """Why (namespace, name) cannot name a secret ("" when it can): Kubernetes' object-name rules."""
    error = identity_name_error(namespace, "x")
    if error:
        return error
    if not (len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name)):
        return f"name {name[:80]!r} is not a DNS-1123 subdomain (1-253 lower-case letters, digits, '-' and '.')"
    return ""


def load_certs(text: str, what: str, limit: int) -> list[x509.Certificate]:
    """The PEM certificates in `text`; SecretRefused naming `what` when there are none, too many, or garbage."""
    if _PEM_CERT not in text:
        raise SecretRefused(f"{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
    if text.count(_PEM_CERT) > limit:
        raise SecretRefused(f"{what}: {text.count(_PEM_CERT)} certificates, more than {limit}")
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except (ValueError, TypeError) as exc:
        raise SecretRefused(f"{what}: not valid PEM certificates ({str(exc)[:120]})") from None


def key_type(public: object) -> str:
    """'EC P-256', 'RSA 2048', 'Ed25519' ..."""
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384", "secp521r1": "EC P-521"}.get(
            public.curve.name, f"EC {public.curve.name}")
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(public, dsa.DSAPublicKey):
        return f"DSA {public.key_size}"
    return type(public).__name__


def _raw_public(public: object) -> bytes:
    return public.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def load_key(key_pem: str) -> object:
    """The private key; SecretRefused (without its bytes) when it is not one unencrypted PEM key."""
    if "-----BEGIN" not in key_pem or "PRIVATE KEY-----" not in key_pem:
        raise SecretRefused("key: no PEM private key (-----BEGIN ... PRIVATE KEY-----) in it")
    if "ENCRYPTED" in key_pem:
        raise SecretRefused("key: it is encrypted; give it unencrypted (openssl pkey -in KEY -out PLAIN), as "
                            "kubectl create secret tls needs")
    try:
        return serialization.load_pem_private_key(key_pem.encode(), password=None)
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm; their text is not passed on, to be sure
        raise SecretRefused("key: not a valid PEM private key") from None


def key_matches(key: object, cert: x509.Certificate) -> bool:
    try:
        return _raw_public(key.public_key()) == _raw_public(cert.public_key())  # type: ignore[attr-defined]
    except Exception:
        return False


def hosts_of(cert: x509.Certificate) -> list[str]:
    """The leaf's DNS SANs, else its subject CN (what SNI matching in Envoy would look at)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        if names:
            return names[:100]
    except x509.ExtensionNotFound:
        pass
    except Exception:
        return []
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return [str(cns[0].value)] if cns else []


def check(put: TlsSecretPut, now: float) -> tuple[SecretInfo, list[str]]:
    """The SecretInfo of a valid put (version, created and updated left for the store), and warnings."""
    error = name_error(put.namespace, put.name)
    if error:
        raise SecretRefused(error)
    if put.ca_cert_pem:
        load_certs(put.ca_cert_pem, "ca cert", MAX_CA_CERTS)
    if not put.cert_chain_pem and not put.key_pem:  # a CA-only secret: Istio's `<credentialName>-cacert`
        if not put.ca_cert_pem:
            raise SecretRefused("give a certificate and key, or (for a `-cacert` secret) a CA certificate")
        if not put.name.endswith(CACERT_SUFFIX):
            raise SecretRefused(f"a secret holding only ca.crt must be named <credentialName>{CACERT_SUFFIX} "
                                f"(as Istio looks it up); {put.name[:80]!r} is not")
        return SecretInfo(namespace=put.namespace, name=put.name, type=SECRET_TYPE_OPAQUE, has_ca_cert=True), []
    if not put.cert_chain_pem:
        raise SecretRefused("certificate: missing (a kubernetes.io/tls secret needs tls.crt and tls.key)")
    if not put.key_pem:
        raise SecretRefused("key: missing (a kubernetes.io/tls secret needs tls.crt and tls.key)")
    chain = load_certs(put.cert_chain_pem, "certificate", MAX_CHAIN_CERTS)
    key = load_key(put.key_pem)
    leaf = chain[0]
    if not key_matches(key, leaf):
        raise SecretRefused("key: it does not match the certificate (the first in the chain): "
                            "tls.key must be the private key of tls.crt's leaf")
    not_before, not_after = leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp()
    warnings = []
    if not_after <= now:
        warnings.append(f"the certificate expired at {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}: it is stored "
                        "and served as Envoy serves it, and clients will refuse it")
    elif not_before > now:
        warnings.append(f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
    return SecretInfo(namespace=put.namespace, name=put.name, type=SECRET_TYPE_TLS, hosts=hosts_of(leaf),
                      not_before=not_before, not_after=not_after, key_type=key_type(leaf.public_key()),
                      has_ca_cert=bool(put.ca_cert_pem)), warnings

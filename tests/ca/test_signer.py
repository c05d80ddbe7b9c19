"""signer.py without sockets: what an issued certificate holds, which CSRs are refused, and every way a
renewal proof fails."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.ca.signer import (
    MIN_TTL, Authority, SignRefused, clamp_ttl, issue, load_csr, parse_spiffe, spiffe_id, uri_sans, verify_proof,
)
from tests.ca import pki

TD = "cluster.local"
NOW = pki.NOW


@pytest.fixture(scope="module")
def authority() -> Authority:
    root_key = pki.key()
    root = pki.ca_cert("root", root_key, root_key.public_key())
    return Authority(root, root_key, (), root)


def test_an_issued_certificate_names_only_the_granted_identity(authority: Authority) -> None:
    csr_pem, _ = pki.csr(uris=("spiffe://cluster.local/ns/kube-system/sa/admin",), dns=("evil.example",))
    cert = issue(authority, load_csr(csr_pem), spiffe_id(TD, "a", "web"), 3600, NOW)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and list(san.value) == [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/web")]
    assert cert.subject == x509.Name([])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == NOW + datetime.timedelta(seconds=3600)
    assert cert.not_valid_before_utc == NOW - datetime.timedelta(seconds=60)
    cert.verify_directly_issued_by(authority.root)
    assert authority.chain == []  # a root signs: the chain after the leaf is empty


def test_ttl_is_clamped_to_60_seconds_and_the_maximum() -> None:
    assert clamp_ttl(0, 86400, 90 * 86400) == 86400
    assert clamp_ttl(1, 86400, 7200) == MIN_TTL == 60
    assert clamp_ttl(60, 86400, 7200) == 60 and clamp_ttl(61, 86400, 7200) == 61
    assert clamp_ttl(7201, 86400, 7200) == 7200 and clamp_ttl(7200, 86400, 7200) == 7200
    assert clamp_ttl(-5, 86400, 7200) == 60


@pytest.mark.parametrize("make,words", [
    (lambda: pki.csr(ec.generate_private_key(ec.SECP384R1()))[0], "curve secp384r1"),
    (lambda: pki.csr(pki.rsa_key(1024))[0], "RSA 1024 bits"),
    (lambda: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a PEM"),
    (lambda: "", "not a PEM"),
])
def test_csrs_with_other_keys_or_no_csr_at_all_are_refused(make, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SignRefused, match=words):
        load_csr(make())


def test_a_csr_whose_self_signature_does_not_verify_is_refused() -> None:
    key, other = pki.key(), pki.key()
    good = x509.load_pem_x509_csr(pki.csr(key)[0].encode())
    forged = x509.CertificateSigningRequestBuilder().subject_name(good.subject).sign(other, hashes.SHA256())
    der = bytearray(forged.public_bytes(serialization.Encoding.DER))
    # swap in the victim's public key: the signature (by `other`) no longer matches the key it carries
    theirs = other.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    mine = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    swapped = bytes(der).replace(theirs, mine)
    assert swapped != bytes(der)
    text = x509.load_der_x509_csr(swapped).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(SignRefused, match="does not verify with its own key"):
        load_csr(text)
    assert load_csr(pki.csr(pki.rsa_key(2048))[0])  # RSA 2048 is allowed


def test_parse_spiffe_accepts_only_workload_ids_of_the_trust_domain() -> None:
    assert parse_spiffe("spiffe://cluster.local/ns/a/sa/b.c", TD) == ("a", "b.c")
    for bad in ("spiffe://other/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/b/c", "spiffe://cluster.local/ns/A/sa/b",
                "spiffe://cluster.local/ns//sa/b", "https://cluster.local/ns/a/sa/b", "spiffe://cluster.local/x/a/sa/b"):
        with pytest.raises(SignRefused):
            parse_spiffe(bad, TD)


def _renewal(authority: Authority, identity: str = "spiffe://cluster.local/ns/a/sa/web", issued_at=NOW,  # type: ignore[no-untyped-def]
             ttl: int = 3600):
    csr_pem, key = pki.csr()
    cert = issue(authority, load_csr(csr_pem), identity, ttl, issued_at)
    next_csr, _ = pki.csr()
    der = x509.load_pem_x509_csr(next_csr.encode()).public_bytes(serialization.Encoding.DER)
    return [cert.public_bytes(serialization.Encoding.PEM).decode()], pki.proof_signature(key, next_csr), der, key


def test_a_valid_renewal_proof_yields_its_identity(authority: Authority) -> None:
    chain, signature, der, _ = _renewal(authority)
    assert verify_proof(chain, signature, der, [authority.root], TD, NOW) == "spiffe://cluster.local/ns/a/sa/web"


def test_every_bad_renewal_proof_is_refused_with_its_reason(authority: Authority) -> None:
    chain, signature, der, key = _renewal(authority)
    other_key = pki.key()
    other_root = pki.ca_cert("other", other_key, other_key.public_key())
    cases = {
        "proof_signature does not verify": (chain, pki.key().sign(der, ec.ECDSA(hashes.SHA256())), der, [authority.root], NOW),
        "proof_signature does not verify:": (chain, signature, der + b"x", [authority.root], NOW),
        "expired at": (chain, signature, der, [authority.root], NOW + datetime.timedelta(seconds=3600)),
        "is not valid before": (chain, signature, der, [authority.root], NOW - datetime.timedelta(minutes=2)),
        "does not chain to a root in the current trust bundle": (chain, signature, der, [other_root], NOW),
        "needs both": (chain, b"", der, [authority.root], NOW),
        "not a PEM certificate": (["junk"], signature, der, [authority.root], NOW),
    }
    for name, (c, s, d, roots, now) in cases.items():
        with pytest.raises(SignRefused, match=name):
            verify_proof(c, s, d, roots, TD, now)
    foreign, sig2, der2, _ = _renewal(authority, "spiffe://elsewhere/ns/a/sa/web")
    with pytest.raises(SignRefused, match="not a workload identity of trust domain cluster.local"):
        verify_proof(foreign, sig2, der2, [authority.root], TD, NOW)
    ca_proof = [pki.pem(authority.root).decode()]
    with pytest.raises(SignRefused, match="is a CA"):
        verify_proof(ca_proof, pki.proof_signature(authority.key, pki.csr()[0]), der, [authority.root], TD, NOW)  # type: ignore[arg-type]
    assert uri_sans(authority.root) == []


def test_a_proof_through_an_intermediate_chains_to_the_bundle() -> None:
    root_key, inter_key = pki.key(), pki.key()
    root = pki.ca_cert("root", root_key, root_key.public_key())
    inter = pki.ca_cert("inter", root_key, inter_key.public_key(), issuer=root.subject)
    authority = Authority(inter, inter_key, (), root)
    assert authority.chain == [inter]
    chain, signature, der, _ = _renewal(authority)
    full = chain + [pki.pem(inter).decode()]
    assert verify_proof(full, signature, der, [root], TD, NOW).endswith("/ns/a/sa/web")
    with pytest.raises(SignRefused, match="does not chain"):
        verify_proof(chain, signature, der, [root], TD, NOW)  # the intermediate left out

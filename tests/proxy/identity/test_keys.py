"""proxy/identity/keys.py, x509_read.py and x509_worker.py (the child's side, driven in-process through
x509_worker.handle): the key, the CSR, the renewal proof, the chain and root checks, the request bounds."""

from __future__ import annotations

import msgspec
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proto.identity_worker import (MAX_REQUEST, ChainChecked, CheckChain, KeyMade, MakeKey, ReadRoots, RootsRead,
                                   WorkerFailed, WorkerReply)
from proxy.identity.keys import key_pem, load_key, new_key
from proxy.identity.material import Checked
from proxy.identity.spiffe import spiffe_id
from proxy.identity.x509_read import cert_spiffe_ids
from proxy.identity.x509_worker import answer, handle
from tests.proxy.identity.testca import TestCa

ID = "spiffe://cluster.local/ns/default/sa/reviews"
GARBAGE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def test_spiffe_id_is_istios_form() -> None:
    assert spiffe_id("example.org", "shop", "cart") == "spiffe://example.org/ns/shop/sa/cart"


def test_key_is_ecdsa_p256() -> None:
    key = new_key()
    assert isinstance(key.curve, ec.SECP256R1)
    assert load_key(key_pem(key)).private_numbers() == key.private_numbers()


def test_load_key_refuses_a_non_ec_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError, match="not an ECDSA key"):
        load_key(other)


def test_a_new_key_is_p256_and_its_csr_carries_the_spiffe_id_as_its_only_uri_san() -> None:
    made = handle(MakeKey(identity=ID))
    assert isinstance(made, KeyMade) and made.proof_signature == b""
    key = load_key(made.key_pem.encode())
    assert isinstance(key.curve, ec.SECP256R1)
    csr = x509.load_pem_x509_csr(made.csr_pem.encode())
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ID]
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()
    assert handle(MakeKey(identity=ID)).key_pem != made.key_pem  # type: ignore[union-attr]  # a new key each time


def test_proof_is_an_ecdsa_sha256_signature_over_the_csr_der_by_the_current_key() -> None:
    current = new_key()
    made = handle(MakeKey(identity=ID, proof_key_pem=key_pem(current).decode()))
    assert isinstance(made, KeyMade)
    der = x509.load_pem_x509_csr(made.csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    current.public_key().verify(made.proof_signature, der, ec.ECDSA(hashes.SHA256()))  # raises if wrong
    with pytest.raises(InvalidSignature):
        load_key(made.key_pem.encode()).public_key().verify(made.proof_signature, der, ec.ECDSA(hashes.SHA256()))


def check(key: ec.EllipticCurvePrivateKey, chain: list[str], expected: str = ID,
          roots: tuple[str, ...] | list[str] = ()) -> WorkerReply:
    return handle(CheckChain(key_pem=key_pem(key).decode(), chain_pem=chain, expected_id=expected,
                             roots_pem=list(roots)))


def test_a_checked_chain_gives_identity_serial_validity_and_the_root_that_issued_it() -> None:
    ca, other = TestCa(), TestCa("other root")
    key = new_key()
    leaf_pem = ca.sign_key(key.public_key(), ID, ttl=600, start=1_900_000_000)
    reply = check(key, [leaf_pem], roots=[other.pem, GARBAGE, ca.pem])  # an unreadable root is left out
    assert isinstance(reply, ChainChecked)
    material = Checked.of(key_pem(key).decode(), reply).material
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    assert material.spiffe_id == ID and cert_spiffe_ids(leaf) == [ID] and material.chain_pem == [leaf_pem]
    assert material.serial == format(leaf.serial_number, "x") and material.leaf.issuer == ca.subject
    assert (material.not_before, material.not_after) == (1_900_000_000, 1_900_000_600)
    assert not material.expired(1_900_000_599) and material.expired(1_900_000_600)
    assert [root.fingerprint for root in reply.roots] == [other.fingerprint, ca.fingerprint]
    assert reply.issuer == ca.fingerprint
    assert check(key, [leaf_pem], roots=[other.pem]).issuer == ""  # type: ignore[union-attr]


def test_a_root_with_the_issuers_name_but_another_key_did_not_issue_it() -> None:
    ca, impostor = TestCa("mesh root"), TestCa("mesh root")  # same subject, another key
    key = new_key()
    reply = check(key, [ca.sign_key(key.public_key(), ID)], roots=[impostor.pem])
    assert isinstance(reply, ChainChecked) and reply.issuer == "" and reply.roots[0].subject == ca.subject


def test_a_chain_for_another_key_is_refused() -> None:
    assert check(new_key(), [TestCa().sign_key(new_key().public_key(), ID)]) == \
        WorkerFailed(kind="material", error="the certificate is not for our key")


def test_a_certificate_for_another_identity_is_refused() -> None:
    ca, key = TestCa(), new_key()
    other = "spiffe://cluster.local/ns/b/sa/reviews"
    assert check(key, [ca.sign_key(key.public_key(), other)]) == \
        WorkerFailed(kind="material", error=f"the certificate is for {other}, this workload is {ID}")


def test_garbage_is_refused_as_material() -> None:
    reply = check(new_key(), [GARBAGE])
    assert isinstance(reply, WorkerFailed) and reply.kind == "material"
    assert reply.error.startswith("a certificate cannot be read")
    assert check(new_key(), []) == WorkerFailed(kind="material", error="no certificate")
    bad_key = handle(CheckChain(key_pem="garbage", chain_pem=[TestCa().pem], expected_id=ID))
    assert isinstance(bad_key, WorkerFailed) and bad_key.kind == "material"


def test_roots_are_read_all_or_none_with_the_root_that_issued_the_held_chain() -> None:
    old, new = TestCa("old"), TestCa("new")
    key = new_key()
    chain = [old.sign_key(key.public_key(), ID)]
    read = handle(ReadRoots(roots_pem=[new.pem, old.pem], chain_pem=chain))
    assert isinstance(read, RootsRead) and read.issuer == old.fingerprint
    assert [root.subject for root in read.roots] == [new.subject, old.subject]
    assert handle(ReadRoots(roots_pem=[new.pem])) == RootsRead(roots=read.roots[:1], issuer="")
    refused = handle(ReadRoots(roots_pem=[new.pem, GARBAGE], chain_pem=chain))
    assert isinstance(refused, WorkerFailed) and refused.error.startswith("a certificate cannot be read")
    assert handle(ReadRoots(roots_pem=[])) == WorkerFailed(kind="material", error="no certificate")


def test_a_request_one_byte_over_the_bound_or_unreadable_is_refused() -> None:
    decode = msgspec.msgpack.Decoder(WorkerReply).decode  # type: ignore[arg-type]
    at = msgspec.msgpack.encode(MakeKey(identity=ID))
    at_bound = decode(answer(at.ljust(MAX_REQUEST, b"\0")))  # within the bound: read (trailing bytes refused)
    assert isinstance(at_bound, WorkerFailed) and at_bound.error.startswith("unreadable request")
    assert decode(answer(b"\0" * (MAX_REQUEST + 1))) == \
        WorkerFailed(kind="request", error=f"the request is over {MAX_REQUEST} bytes")
    unreadable = decode(answer(b"\x81\xa2op\xa4nope"))
    assert isinstance(unreadable, WorkerFailed) and unreadable.kind == "request"
    assert isinstance(decode(answer(at)), KeyMade)


def test_a_new_key_may_come_with_a_bundles_roots_read_all_or_none() -> None:
    """The first key and the first bundle take one child at start-up (agent.py)."""
    ca = TestCa()
    made = handle(MakeKey(identity=ID, roots_pem=[ca.pem]))
    assert isinstance(made, KeyMade) and not made.roots_error
    assert [r.fingerprint for r in made.roots] == [ca.fingerprint]
    refused = handle(MakeKey(identity=ID, roots_pem=[ca.pem, GARBAGE]))
    assert isinstance(refused, KeyMade) and refused.roots == []
    assert refused.roots_error.startswith("a certificate cannot be read")
    assert load_key(refused.key_pem.encode())  # the key is made all the same

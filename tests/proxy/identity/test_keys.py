"""proxy/identity/keys.py, material.py, spiffe.py: the key, the CSR, the renewal proof, the chain checks."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.identity.keys import csr_pem, key_pem, load_key, new_key, proof_signature
from proxy.identity.material import Material, MaterialError
from proxy.identity.spiffe import cert_spiffe_ids, spiffe_id
from tests.proxy.identity.testca import TestCa

ID = "spiffe://cluster.local/ns/default/sa/reviews"


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


def test_csr_carries_the_spiffe_id_as_its_only_uri_san_and_is_self_signed() -> None:
    key = new_key()
    csr = x509.load_pem_x509_csr(csr_pem(key, ID).encode())
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ID]
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()


def test_proof_is_an_ecdsa_sha256_signature_over_the_csr_der_by_the_current_key() -> None:
    current, new = new_key(), new_key()
    csr = csr_pem(new, ID)
    signature = proof_signature(current, csr)
    der = x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER)
    current.public_key().verify(signature, der, ec.ECDSA(hashes.SHA256()))  # raises if wrong
    with pytest.raises(InvalidSignature):
        new.public_key().verify(signature, der, ec.ECDSA(hashes.SHA256()))


def test_material_reads_identity_serial_and_validity() -> None:
    ca = TestCa()
    material = ca.material(ID, ttl=600, start=1_900_000_000)
    assert material.spiffe_id == ID and cert_spiffe_ids(material.leaf) == [ID]
    assert material.serial == format(material.leaf.serial_number, "x")
    assert (material.not_before, material.not_after) == (1_900_000_000, 1_900_000_600)
    assert not material.expired(1_900_000_599) and material.expired(1_900_000_600)


def test_material_refuses_a_chain_for_another_key() -> None:
    ca = TestCa()
    chain = ca.sign_key(new_key().public_key(), ID)
    with pytest.raises(MaterialError, match="not for our key"):
        Material.build(new_key(), [chain], ID)


def test_material_refuses_a_certificate_for_another_identity() -> None:
    ca, key = TestCa(), new_key()
    other = "spiffe://cluster.local/ns/b/sa/reviews"
    with pytest.raises(MaterialError, match=f"is for {other}, this workload is {ID}"):
        Material.build(key, [ca.sign_key(key.public_key(), other)], ID)


def test_material_refuses_garbage() -> None:
    with pytest.raises(MaterialError):
        Material.build(new_key(), ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"], ID)
    with pytest.raises(MaterialError, match="no certificate"):
        Material.build(new_key(), [], ID)

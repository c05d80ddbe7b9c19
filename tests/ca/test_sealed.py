"""A signing key sealed for etcd (services/ca/sealed.py), pure: it round-trips with the KEK, holds no form of
the key in the clear, and opens only into a key that matches its certificate, chained to a root of the
bundle in force."""

from __future__ import annotations

import base64
import datetime
import os

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization

from proto.ca import SealedKey
from runtime.bus import encode
from services.ca import sealed
from services.ca.material import fingerprint, new_root
from services.ca.signer import Authority
from tests.ca import pki

NOW = datetime.datetime.now(datetime.timezone.utc)


def own_root() -> Authority:
    cert, key = new_root("cluster.local", NOW)
    return Authority(cert, key, (), cert)


def plugin() -> Authority:
    root_key, mid_key, ca_key = pki.key(), pki.key(), pki.key()
    root = pki.ca_cert("operator root", root_key, root_key.public_key(), now=NOW)
    mid = pki.ca_cert("operator mid", root_key, mid_key.public_key(), issuer=root.subject, now=NOW)
    ca = pki.ca_cert("mesh intermediate", mid_key, ca_key.public_key(), issuer=mid.subject, now=NOW)
    return Authority(ca, ca_key, (mid,), root)


def key_forms(authority: Authority) -> list[bytes]:
    der = authority.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    raw = authority.key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    return [der, base64.b64encode(der), pki.pem(authority.key), raw, raw.hex().encode(), base64.b64encode(raw)]


@pytest.mark.parametrize("make", [own_root, plugin])
def test_a_sealed_key_round_trips_with_its_kek_and_holds_no_form_of_the_key(make) -> None:  # type: ignore[no-untyped-def]
    authority, kek = make(), os.urandom(32)
    value = encode(sealed.seal_key(kek, authority))
    for form in key_forms(authority):
        assert form not in value
    assert b"PRIVATE KEY" not in value and kek.hex().encode() not in value
    fp = fingerprint(authority.cert)
    opened = sealed.open_key(kek, fp, msgspec.json.decode(value, type=SealedKey), {fingerprint(authority.root)})
    assert opened.cert == authority.cert and opened.root == authority.root
    assert opened.intermediates == authority.intermediates
    assert opened.key.private_numbers() == authority.key.private_numbers()  # type: ignore[union-attr]


def test_another_kek_gets_the_line_the_operator_sees() -> None:
    authority = own_root()
    value = sealed.seal_key(os.urandom(32), authority)
    with pytest.raises(sealed.SealError, match="the CA key in etcd does not decrypt with this KEK"):
        sealed.open_key(os.urandom(32), value.fingerprint, value, {value.fingerprint})


def test_a_sealed_key_read_under_another_fingerprint_is_refused() -> None:
    a, b, kek = own_root(), own_root(), os.urandom(32)
    value = sealed.seal_key(kek, a)
    fp_b = fingerprint(b.cert)
    with pytest.raises(sealed.SealError, match="does not decrypt with this KEK"):  # its path is the associated data
        sealed.open_key(kek, fp_b, value, {fp_b})


def test_a_sealed_key_beside_another_certificate_is_refused() -> None:
    a, b, kek = own_root(), own_root(), os.urandom(32)
    value = sealed.seal_key(kek, a)
    swapped = msgspec.structs.replace(value, cert_pem=sealed.pem(b.cert))  # etcd writer swaps the public part
    with pytest.raises(sealed.SealError, match="does not belong to the certificate"):
        sealed.open_key(kek, value.fingerprint, swapped, {value.fingerprint})


def test_a_plugin_chain_that_does_not_reach_its_root_or_a_root_out_of_the_bundle_is_refused() -> None:
    authority, kek = plugin(), os.urandom(32)
    value = sealed.seal_key(kek, authority)
    other_root = plugin().root
    broken = msgspec.structs.replace(value, root_pem=sealed.pem(other_root))
    with pytest.raises(sealed.SealError, match="does not chain to its root"):
        sealed.open_key(kek, value.fingerprint, broken, {fingerprint(other_root)})
    with pytest.raises(sealed.SealError, match="not in the trust bundle in force"):
        sealed.open_key(kek, value.fingerprint, value, {fingerprint(other_root)})
    assert sealed.open_key(kek, value.fingerprint, value, {fingerprint(authority.root)}).root == authority.root


def test_a_byte_changed_in_the_stored_ciphertext_is_refused() -> None:
    authority, kek = own_root(), os.urandom(32)
    value = sealed.seal_key(kek, authority)
    bad = bytearray(value.ciphertext)
    bad[len(bad) // 2] ^= 0x80
    with pytest.raises(sealed.SealError, match="changed since it was sealed"):
        sealed.open_key(kek, value.fingerprint, msgspec.structs.replace(value, ciphertext=bytes(bad)),
                        {value.fingerprint})

"""proxy/inbound/jwt/jwks.py and signature.py: key sets parsed once with Envoy's key rules, signatures checked
with PyJWT by kid and alg, and no algorithm confusion."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from proxy.inbound.jwt import status
from proxy.inbound.jwt.jwks import failed_fetch, parse_jwks
from proxy.inbound.jwt.signature import check_signature
from proxy.inbound.jwt.status import JwtFailure
from proxy.inbound.jwt.token import parse
from tests.proxy.jwt.issuers import (
    HMAC_SECRET, claims, default_jwks, ec_key, ed_key, jwk, jwks, oct_jwk, rsa_key, sign, unsigned,
)


def verify(token: str, keys_text: str) -> str:
    """"OK" or the failure status."""
    try:
        check_signature(parse(token.encode()), parse_jwks(keys_text))
    except JwtFailure as failure:
        return failure.status
    return "OK"


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS512", "ES256", "EdDSA"])
def test_tokens_of_each_algorithm_verify_with_the_issuers_keys(alg):
    assert verify(sign(alg=alg), default_jwks()) == "OK"


def test_a_token_signed_by_another_key_or_altered_fails_verification():
    assert verify(sign(key=rsa_key(2)), default_jwks()) == status.VERIFICATION_FAILS
    assert verify(sign(alg="ES256", key=ec_key(2)), default_jwks()) == status.VERIFICATION_FAILS
    head, payload, sig = sign().split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(sub="mallory")).encode()).rstrip(b"=").decode()
    assert verify(f"{head}.{forged}.{sig}", default_jwks()) == status.VERIFICATION_FAILS


def test_kid_and_alg_pick_the_keys_tried():
    assert verify(sign(kid="unknown"), default_jwks()) == status.KID_ALG_MISMATCH
    assert verify(sign(kid=""), default_jwks()) == "OK"  # no kid: every key is tried
    only_es = jwks(jwk(rsa_key(), "r1", alg="RS512"))
    assert verify(sign(alg="RS256"), only_es) == status.KID_ALG_MISMATCH  # the key's alg is not the token's
    assert verify(sign(alg="RS512"), only_es) == "OK"
    no_kid = jwks(jwk(rsa_key()))
    assert verify(sign(kid="anything"), no_kid) == "OK"  # a key without kid matches any kid


def test_hs256_signed_with_the_public_key_never_verifies():
    """Algorithm confusion (RFC 8725 3.1): HMAC keyed with the RSA public key's bytes."""
    pem = rsa_key().public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"r1"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    mac = hmac.new(pem, header + b"." + body, hashlib.sha256).digest()
    token = b".".join((header, body, base64.urlsafe_b64encode(mac).rstrip(b"="))).decode()
    assert verify(token, default_jwks()) == status.VERIFICATION_FAILS
    # an HMAC secret published as an `oct` key is Envoy's HS256, and works only for HS*
    assert verify(sign(alg="HS256"), jwks(oct_jwk())) == "OK"
    assert verify(sign(alg="HS256", key=b"another secret of 32 bytes......"), jwks(oct_jwk())) == \
        status.VERIFICATION_FAILS


def test_an_ed25519_signature_of_the_wrong_length_fails_at_once():
    token = unsigned({"alg": "EdDSA", "kid": "d1"}, claims(), b"short")
    assert verify(token, default_jwks()) == status.ED25519_SIGNATURE_LENGTH


@pytest.mark.parametrize("text, problem", [
    ("not json", "Jwks is an invalid JSON"),
    ("[1]", "Jwks is an invalid JSON"),
    ('{"keys": ' + "[" * 5000 + "]" * 5000 + "}", "Jwks is an invalid JSON"),  # too deep: no crash
    ('{"nokeys": 1}', "Jwks does not have [keys] field"),
    ('{"keys": 1}', "[keys] in Jwks is not an array"),
    ('{"keys": [1, {"kty": "XYZ"}, {"n": "x"}]}', "Jwks doesn't have any valid public key"),
    (None, "the rule has no key set"),
])
def test_a_key_set_without_usable_keys_says_why_and_fails_every_token(text, problem):
    keys = parse_jwks(text)
    assert keys.keys == () and keys.problem == problem
    assert verify(sign(), text) == status.NO_VALID_KEYS  # type: ignore[arg-type]


def test_unusable_keys_are_skipped_and_the_rest_kept():
    e3 = dict(jwk(rsa_key(), "e3"), e="Aw")  # exponent 3 is allowed ...
    odd_e = dict(jwk(rsa_key(), "odd"), e="BQ")  # ... 5 is not (Envoy)
    wrong_alg = jwk(ec_key(), "wa", alg="RS256")  # an EC key cannot be RS256
    wrong_crv = dict(jwk(ec_key(), "wc", alg="ES384"))  # a P-256 key claiming ES384
    x25519 = {"kty": "OKP", "crv": "X25519", "x": jwk(ed_key())["x"]}
    keys = parse_jwks(jwks(odd_e, wrong_alg, wrong_crv, x25519, jwk(rsa_key(), "r1"), e3))
    assert [k.kid for k in keys.keys] == ["r1", "e3"] and keys.problem == ""


def test_an_ec_key_without_crv_or_alg_is_p256_and_private_members_are_ignored():
    key = jwk(ec_key(), "e1")
    del key["crv"]
    assert verify(sign(alg="ES256"), jwks(key)) == "OK"
    private = json.loads(json.dumps(jwk(rsa_key(), "r1")))
    private["d"] = "AAAA"  # a private part in a published set is not read
    assert verify(sign(), jwks(private)) == "OK"


def test_googles_x509_certificate_map_is_a_key_set_too():
    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(when).not_valid_after(when + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    assert verify(sign(kid="r1"), json.dumps({"r1": pem})) == "OK"


def test_a_failed_fetch_fails_every_signature_closed():
    keys = failed_fetch("connection refused")
    assert keys.fetch_error == "connection refused" and "connection refused" in keys.problem
    with pytest.raises(JwtFailure) as caught:
        check_signature(parse(sign().encode()), keys)
    assert caught.value.status == status.VERIFICATION_FAILS


def test_hmac_secret_is_read_from_the_oct_key():
    assert parse_jwks(jwks(oct_jwk())).keys[0].key == HMAC_SECRET

"""proxy/inbound/jwt/token.py: a token is taken apart as Envoy's Jwt::parseFromString does, with its statuses."""

from __future__ import annotations

import base64

import pytest

from proxy.inbound.jwt import status
from proxy.inbound.jwt.status import JwtFailure
from proxy.inbound.jwt.token import MAX_TOKEN_BYTES, parse
from tests.proxy.jwt.issuers import ISSUER, claims, sign, unsigned


def failure(token: str | bytes) -> str:
    with pytest.raises(JwtFailure) as caught:
        parse(token.encode() if isinstance(token, str) else token)
    return caught.value.status


def test_a_signed_token_yields_its_claims_audiences_as_a_list_and_what_the_signature_covers():
    token = sign(claims(aud="svc", nbf=5, nested={"a": {"b": 1}}))
    jwt = parse(token.encode())
    assert (jwt.alg, jwt.kid, jwt.iss, jwt.sub, jwt.nbf) == ("RS256", "r1", ISSUER, "alice", 5)
    assert jwt.audiences == ["svc"] and jwt.payload["nested"] == {"a": {"b": 1}}
    head, payload, _ = token.split(".")
    assert jwt.signing_input == f"{head}.{payload}".encode() and jwt.payload_b64 == payload.encode()
    assert parse(sign(claims(aud=["a", "b"])).encode()).audiences == ["a", "b"]
    assert parse(sign(claims()).encode()).audiences == []


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b."])
def test_anything_but_three_non_empty_sections_is_a_bad_format(token):
    assert failure(token) == status.BAD_FORMAT


def test_malformed_sections_fail_with_envoys_statuses():
    good = sign().split(".")
    assert failure(f"!!.{good[1]}.{good[2]}") == status.HEADER_BAD_BASE64
    assert failure(f"bm90anNvbg.{good[1]}.{good[2]}") == status.HEADER_BAD_JSON  # "notjson"
    assert failure(f"{good[0]}.%%%.{good[2]}") == status.PAYLOAD_BAD_BASE64
    assert failure(f"{good[0]}.WzEsMl0.{good[2]}") == status.PAYLOAD_BAD_JSON  # [1,2]: not an object
    assert failure(f"{good[0]}.{good[1]}.a+b") == status.SIGNATURE_BAD_BASE64
    deep = unsigned({"alg": "RS256"}, {"a": 1}).split(".")
    nested = base64.urlsafe_b64encode(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}").rstrip(b"=").decode()
    assert failure(f"{deep[0]}.{nested}.{deep[2]}") == status.PAYLOAD_BAD_JSON  # not a 500: msgspec's depth limit


def test_alg_none_and_unknown_algorithms_are_not_supported_and_alg_is_required():
    assert failure(unsigned({"alg": "none"}, claims())) == status.HEADER_ALG_NOT_IMPLEMENTED
    assert failure(unsigned({"alg": "ES256K"}, claims())) == status.HEADER_ALG_NOT_IMPLEMENTED
    assert failure(unsigned({"typ": "JWT"}, claims())) == status.HEADER_BAD_ALG
    assert failure(unsigned({"alg": 5}, claims())) == status.HEADER_BAD_ALG
    assert failure(unsigned({"alg": "RS256", "kid": 7}, claims())) == status.HEADER_BAD_KID


@pytest.mark.parametrize("claim, value, expected", [
    ("iss", 1, status.ISS_NOT_STRING),
    ("sub", ["a"], status.SUB_NOT_STRING),
    ("jti", 3, status.JTI_NOT_STRING),
    ("aud", 3, status.AUD_NOT_STRING),
    ("aud", ["a", 1], status.AUD_NOT_STRING),
    ("exp", "soon", status.not_integer("exp")),
    ("exp", True, status.not_integer("exp")),
    ("nbf", None, status.not_integer("nbf")),
    ("iat", -1, status.out_of_range("iat")),
    ("exp", 2 ** 64, status.out_of_range("exp")),
])
def test_registered_claims_of_the_wrong_type_fail(claim, value, expected):
    payload = claims()
    payload[claim] = value
    assert failure(unsigned({"alg": "RS256"}, payload)) == expected


def test_a_token_of_max_token_bytes_parses_and_one_byte_more_is_too_large():
    overhead = len(sign(claims(pad="")))
    pad = (MAX_TOKEN_BYTES - overhead) * 3 // 4 + 3
    while len(sign(claims(pad="x" * pad))) > MAX_TOKEN_BYTES:
        pad -= 1
    token = sign(claims(pad="x" * pad))
    token += "=" * (MAX_TOKEN_BYTES - len(token))  # padding on the signature, which base64url tolerates
    assert len(token) == MAX_TOKEN_BYTES and token.count("=") <= 2
    assert parse(token.encode()).payload["pad"] == "x" * pad
    assert len(token + "=") == MAX_TOKEN_BYTES + 1 and failure(token + "=") == status.TOO_LARGE
    assert failure(sign(claims(pad="x" * (pad + 2)))) == status.TOO_LARGE

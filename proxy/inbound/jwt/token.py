"""One compact JWS token taken apart, checked the way Envoy's jwt_authn parses it before any key is used.

    parse(token: bytes) -> Jwt        raises JwtFailure(status) (proxy/inbound/jwt/status.py)

Order and rules of Envoy's Jwt::parseFromString (envoyproxy/envoy source/common/jwt/jwt.cc): three
base64url sections; a JSON object header with a string `alg` that is one of the implemented algorithms
(never `none`) and a string `kid` if any; a JSON object payload whose iss/sub/jti are strings, iat/nbf/exp
non-negative integers below 2^64, aud a string or a list of strings; a base64url signature.

MAX_TOKEN_BYTES bounds what is parsed at all. Envoy has no bound of its own on a token: the request head
limit (max_request_headers_kb, 60 KiB, proxy/http/limits.py) is its bound, so ours is the same 60 KiB, a
token one byte longer fails with TOO_LARGE before any decoding (docs/security.md).
"""

from __future__ import annotations

import binascii
import re
from typing import Any

import msgspec

from proxy.inbound.jwt import status
from proxy.inbound.jwt.status import JwtFailure

MAX_TOKEN_BYTES = 60 * 1024
# Envoy's implemented algorithms (jwt.cc isImplemented); `none` and anything else: HEADER_ALG_NOT_IMPLEMENTED
ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                        "PS256", "PS384", "PS512", "EdDSA"})
_UINT64 = 1 << 64
_B64URL = re.compile(rb"[A-Za-z0-9_-]*={0,2}")
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_decode = msgspec.json.Decoder().decode


class Jwt:
    """A parsed token. `payload` is the claim set as decoded (nested objects kept); `signing_input` is what the
    signature covers (`<header>.<payload>` as sent); `payload_b64` the payload section as sent (what
    outputPayloadToHeader forwards); audiences is `aud` as a list ([] without one)."""

    __slots__ = ("alg", "kid", "iss", "sub", "nbf", "exp", "audiences", "payload", "payload_b64", "signing_input",
                 "signature")

    def __init__(self, alg: str, kid: str, payload: dict[str, Any], audiences: list[str], nbf: int, exp: int,
                 payload_b64: bytes, signing_input: bytes, signature: bytes) -> None:
        self.alg = alg
        self.kid = kid
        self.payload = payload
        self.iss: str = payload.get("iss", "")
        self.sub: str = payload.get("sub", "")
        self.audiences = audiences
        self.nbf = nbf
        self.exp = exp
        self.payload_b64 = payload_b64
        self.signing_input = signing_input
        self.signature = signature


def b64url(section: bytes) -> bytes:
    """Base64url with or without padding (absl::WebSafeBase64Unescape); ValueError for anything else."""
    if not _B64URL.fullmatch(section):
        raise ValueError("not base64url")
    section = section.rstrip(b"=")
    try:  # validated above: binascii directly, without base64's own checks and copies
        return binascii.a2b_base64(section.translate(_TO_STANDARD) + b"=" * (-len(section) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = _decode(data)
    except (msgspec.DecodeError, RecursionError):  # too deeply nested: invalid, as protobuf's depth limit makes it
        return None
    return value if isinstance(value, dict) else None


def _uint64(payload: dict[str, Any], claim: str) -> int:
    """iat/nbf/exp: absent is 0; a bool or non-number is not an integer; < 0 or >= 2^64 out of range."""
    if claim not in payload:
        return 0
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JwtFailure(status.not_integer(claim))
    if value < 0 or value >= _UINT64:
        raise JwtFailure(status.out_of_range(claim))
    return int(value)


def _optional_string(payload: dict[str, Any], claim: str, failure: str) -> None:
    if claim in payload and not isinstance(payload[claim], str):
        raise JwtFailure(failure)


def parse(token: bytes) -> Jwt:
    """The token's parts, or JwtFailure with Envoy's status for the first thing wrong with it."""
    if len(token) > MAX_TOKEN_BYTES:
        raise JwtFailure(status.TOO_LARGE)
    sections = token.split(b".")
    if len(sections) != 3 or not all(sections):
        raise JwtFailure(status.BAD_FORMAT)
    header_b64, payload_b64, signature_b64 = sections
    try:
        header_json = b64url(header_b64)
    except ValueError:
        raise JwtFailure(status.HEADER_BAD_BASE64) from None
    header = _json_object(header_json)
    if header is None:
        raise JwtFailure(status.HEADER_BAD_JSON)
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JwtFailure(status.HEADER_BAD_ALG)
    if alg not in ALGORITHMS:
        raise JwtFailure(status.HEADER_ALG_NOT_IMPLEMENTED)
    kid = header.get("kid", "")
    if not isinstance(kid, str):
        raise JwtFailure(status.HEADER_BAD_KID)
    try:
        payload_json = b64url(payload_b64)
    except ValueError:
        raise JwtFailure(status.PAYLOAD_BAD_BASE64) from None
    payload = _json_object(payload_json)
    if payload is None:
        raise JwtFailure(status.PAYLOAD_BAD_JSON)
    _optional_string(payload, "iss", status.ISS_NOT_STRING)
    _optional_string(payload, "sub", status.SUB_NOT_STRING)
    _uint64(payload, "iat")
    nbf = _uint64(payload, "nbf")
    exp = _uint64(payload, "exp")
    _optional_string(payload, "jti", status.JTI_NOT_STRING)
    aud = payload.get("aud")
    if aud is None and "aud" not in payload:
        audiences: list[str] = []
    elif isinstance(aud, str):
        audiences = [aud]
    elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        audiences = list(aud)
    else:
        raise JwtFailure(status.AUD_NOT_STRING)
    try:
        signature = b64url(signature_b64)
    except ValueError:
        raise JwtFailure(status.SIGNATURE_BAD_BASE64) from None
    return Jwt(alg, kid, payload, audiences, nbf, exp, payload_b64, header_b64 + b"." + payload_b64, signature)

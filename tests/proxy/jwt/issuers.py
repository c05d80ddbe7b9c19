"""Test issuers with real keys: an RSA, an EC P-256, an Ed25519 key and an HMAC secret, their JWKS, and
tokens signed with PyJWT, so every test verifies real signatures. Keys are made once per test session."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from proto.security import ClaimToHeader, JwtHeader, JwtRule
from proto.xds import JwtProvider
from proxy.core.request import RequestHead

ISSUER = "https://issuer.example"
OTHER = "https://other.example"
NOW = 1_900_000_000  # the tests' clock (unix seconds)


@functools.cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(n: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def ed_key(n: int = 0) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


HMAC_SECRET = b"0123456789abcdef0123456789abcdef"


def jwk(key: Any, kid: str = "", alg: str = "") -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        out = json.loads(RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        out = json.loads(ECAlgorithm.to_jwk(public))
    else:
        out = json.loads(OKPAlgorithm.to_jwk(public))
    if kid:
        out["kid"] = kid
    if alg:
        out["alg"] = alg
    return out


def oct_jwk(secret: bytes = HMAC_SECRET, kid: str = "h1") -> dict[str, Any]:
    return {"kty": "oct", "kid": kid, "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode()}


def jwks(*keys: dict[str, Any]) -> str:
    return json.dumps({"keys": list(keys)})


def default_jwks() -> str:
    """The issuer's set: RSA (kid r1), EC (e1), Ed25519 (d1)."""
    return jwks(jwk(rsa_key(), "r1"), jwk(ec_key(), "e1"), jwk(ed_key(), "d1"))


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "exp": NOW + 600, "iat": NOW}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any] | None = None, alg: str = "RS256", kid: str | None = None, key: Any = None) -> str:
    """A token of `payload` (default: claims()) signed with the issuer's key for `alg`."""
    if key is None:
        key = {"RS": rsa_key(), "PS": rsa_key(), "ES": ec_key(), "Ed": ed_key(), "HS": HMAC_SECRET}[alg[:2]]
    if kid is None:
        kid = {"RS": "r1", "PS": "r1", "ES": "e1", "Ed": "d1", "HS": "h1"}[alg[:2]]
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims() if payload is None else payload, key, alg, headers=headers)


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    """A token built by hand (for headers PyJWT would not write, such as alg none)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return ".".join((part(json.dumps(header).encode()), part(json.dumps(payload).encode()), part(signature)))


def rule(issuer: str = ISSUER, jwks_text: str | None = None, **fields: Any) -> JwtRule:
    if "from_headers" in fields and fields["from_headers"] is not None:
        fields["from_headers"] = [JwtHeader(name=n, prefix=p) for n, p in fields["from_headers"]]
    if "output_claim_to_headers" in fields:
        fields["output_claim_to_headers"] = [ClaimToHeader(header=h, claim=c)
                                             for h, c in fields["output_claim_to_headers"]]
    return JwtRule(issuer=issuer, jwks=default_jwks() if jwks_text is None else jwks_text, **fields)


def provider(r: JwtRule | None = None, source: str = "default/jwt", jwks_error: str = "") -> JwtProvider:
    return JwtProvider(source=source, rule=r or rule(), jwks_error=jwks_error)


def head(token: str | None = None, path: str = "/get", headers: list[tuple[bytes, bytes]] | None = None,
         method: str = "GET") -> RequestHead:
    """A request to `app` with `Authorization: Bearer <token>` when a token is given."""
    hs = [(b"host", b"app:8000"), (b"user-agent", b"t")]
    if token is not None:
        hs.append((b"authorization", b"Bearer " + token.encode()))
    hs += headers or []
    return RequestHead(method, "app", 8000, path, hs)


def clock(now: float = NOW):  # type: ignore[no-untyped-def]
    return lambda: now

"""A JSON Web Key Set parsed once per push into PyJWT keys, with Envoy's rules for which keys count.

    parse_jwks(text) -> KeySet           never raises: a bad set is a KeySet without keys and a `problem`
    failed_fetch(reason) -> KeySet       pilot could not fetch the jwksUri (JwtProvider.jwks_error)

Envoy's Jwks::createFromJwksCore (envoyproxy/envoy source/common/jwt/jwks.cc): the text is a JSON object
with a `keys` array (or Google's `{kid: "-----BEGIN CERTIFICATE-----..."}` map of X.509 certificates);
a key that cannot be used is skipped, and a set left without keys has none ("Jwks doesn't have any valid
public key" for every token, as Envoy when its inline jwks is invalid). Per key type:
RSA (`alg` RS*/PS* if set; exponent 3 or 65537), EC (`alg` ES* and `crv` consistent; neither set means
P-256), oct (HMAC: `alg` HS256/384/512 if set), OKP (Ed25519 only; `alg` EdDSA if set). Only public
members are read: a private part in the set is ignored.

A failed fetch fails closed as Istio does: istiod puts a public-only key set in its place
(pilot/pkg/model/jwks_resolver.go PublicOnlyJwks), so every token of that issuer gets "Jwt verification
fails" once its time and audiences pass.
"""

from __future__ import annotations

from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from proxy.inbound.jwt.token import b64url

_CERT_PREFIX = "-----BEGIN CERTIFICATE-----\n"
_CERT_SUFFIX = "\n-----END CERTIFICATE-----\n"
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class Key:
    """One usable key: `kid` and `alg` as the set gave them ("" when absent), `kty` (RSA, EC, oct, OKP) and
    the key PyJWT verifies with (a cryptography public key, or the HMAC secret's bytes)."""

    __slots__ = ("kid", "alg", "kty", "key")

    def __init__(self, kid: str, alg: str, kty: str, key: Any) -> None:
        self.kid, self.alg, self.kty, self.key = kid, alg, kty, key


class KeySet:
    """`keys` in the set's order; `problem` says why a set has none ("" when it has keys); `fetch_error` is
    pilot's reason when it could not fetch the keys at all (then every signature check fails)."""

    __slots__ = ("keys", "problem", "fetch_error")

    def __init__(self, keys: tuple[Key, ...], problem: str = "", fetch_error: str = "") -> None:
        self.keys, self.problem, self.fetch_error = keys, problem, fetch_error


def failed_fetch(reason: str) -> KeySet:
    return KeySet((), f"pilot could not fetch the key set: {reason}", reason)


def _str(jwk: dict[str, Any], name: str) -> str:
    value = jwk.get(name, "")
    return value if isinstance(value, str) else ""


def _rsa(jwk: dict[str, Any], alg: str) -> Any:
    if alg and alg[:2] not in ("RS", "PS"):
        return None
    n, e = jwk.get("n"), jwk.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        return None
    if int.from_bytes(b64url(e.encode()), "big") not in (3, 65537):  # Envoy refuses other exponents
        return None
    return RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": e})


def _ec(jwk: dict[str, Any], alg: str) -> Any:
    if alg and not alg.startswith("ES"):
        return None
    crv = jwk.get("crv", "")
    if not isinstance(crv, str):
        return None
    if alg and crv and _EC_CURVES.get(alg) != crv:
        return None
    crv = crv or _EC_CURVES.get(alg, "P-256")
    x, y = jwk.get("x"), jwk.get("y")
    if crv not in _EC_CURVES.values() or not isinstance(x, str) or not isinstance(y, str):
        return None
    return ECAlgorithm.from_jwk({"kty": "EC", "crv": crv, "x": x, "y": y})


def _oct(jwk: dict[str, Any], alg: str) -> Any:
    if alg and alg not in ("HS256", "HS384", "HS512"):
        return None
    k = jwk.get("k")
    if not isinstance(k, str) or not b64url(k.encode()):
        return None
    return HMACAlgorithm.from_jwk({"kty": "oct", "k": k})


def _okp(jwk: dict[str, Any], alg: str) -> Any:
    if alg and alg != "EdDSA":
        return None
    x = jwk.get("x")
    if jwk.get("crv") != "Ed25519" or not isinstance(x, str) or len(b64url(x.encode())) != 32:
        return None
    return OKPAlgorithm.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": x})


_BY_KTY = {"RSA": _rsa, "EC": _ec, "oct": _oct, "OKP": _okp}


def _key(jwk: Any) -> Key | None:
    if not isinstance(jwk, dict):
        return None
    kty = jwk.get("kty")
    make = _BY_KTY.get(kty) if isinstance(kty, str) else None
    if make is None:
        return None
    alg = _str(jwk, "alg")
    try:
        key = make(jwk, alg)
    except (PyJWTError, ValueError, TypeError, KeyError):
        return None
    return Key(_str(jwk, "kid"), alg, kty, key) if key is not None else None  # type: ignore[arg-type]


def _x509_set(doc: dict[str, Any]) -> tuple[Key, ...] | None:
    """Google's form: every field a kid whose value is one PEM certificate (RSA keys only, as Envoy)."""
    if not doc or not all(k and isinstance(v, str) and v.startswith(_CERT_PREFIX) and v.endswith(_CERT_SUFFIX)
                          for k, v in doc.items()):
        return None
    keys = []
    for kid, pem in doc.items():
        try:
            public = x509.load_pem_x509_certificate(pem.encode()).public_key()
        except ValueError:
            return ()
        if not isinstance(public, rsa.RSAPublicKey):
            return ()
        keys.append(Key(kid, "", "RSA", public))
    return tuple(keys)


def parse_jwks(text: str | None) -> KeySet:
    """The usable keys of a JWKS document (Envoy's rules above); a set without any says why in `problem`."""
    if not text:
        return KeySet((), "the rule has no key set")
    try:
        doc = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return KeySet((), "Jwks is an invalid JSON")
    if not isinstance(doc, dict):
        return KeySet((), "Jwks is an invalid JSON")
    if "keys" not in doc:
        certs = _x509_set(doc)
        if certs is None:
            return KeySet((), "Jwks does not have [keys] field")
        return KeySet(certs, "" if certs else "X509 parse pubkey fails")
    if not isinstance(doc["keys"], list):
        return KeySet((), "[keys] in Jwks is not an array")
    keys = tuple(k for k in map(_key, doc["keys"]) if k is not None)
    return KeySet(keys, "" if keys else "Jwks doesn't have any valid public key")

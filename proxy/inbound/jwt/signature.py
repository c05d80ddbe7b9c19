"""A token's signature checked against a key set, with PyJWT's algorithms (cryptography underneath).

    check_signature(jwt, keys) -> None        raises JwtFailure

Envoy's verifyJwtWithoutTimeChecking (envoyproxy/envoy source/common/jwt/verify.cc): a key is tried when
its `kid` and `alg` (each only if both sides have one) match the token's; none tried is "Jwks doesn't have
key to match kid or alg from Jwt", every one tried failing is "Jwt verification fails"; an Ed25519
signature of the wrong length fails at once.

Algorithm confusion (RFC 8725 3.1): the token's `alg` only picks among the algorithms of the key's own
type -- RS*/PS* for RSA, ES* for EC, EdDSA for OKP, HS* for an `oct` secret -- so an HS256 token is never
checked with a public key taken as an HMAC secret, and `none` never gets here (token.py refuses it).
Stricter than Envoy in one way: Envoy would try an EC key with sha256 for any non-ES `alg`; here such a
key is counted as matched but never verifies.
"""

from __future__ import annotations

from jwt.algorithms import Algorithm, get_default_algorithms

from proxy.inbound.jwt import status
from proxy.inbound.jwt.jwks import KeySet
from proxy.inbound.jwt.status import JwtFailure
from proxy.inbound.jwt.token import ALGORITHMS, Jwt

_ALGORITHMS: dict[str, Algorithm] = {name: alg for name, alg in get_default_algorithms().items() if name in ALGORITHMS}
_FAMILY = {"RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",)}


def check_signature(jwt: Jwt, keys: KeySet) -> None:
    """Return if a key of `keys` verifies the token's signature; else JwtFailure with Envoy's status."""
    if keys.fetch_error:  # Istio's public-only key set: nothing verifies
        raise JwtFailure(status.VERIFICATION_FAILS)
    if not keys.keys:
        raise JwtFailure(status.NO_VALID_KEYS)
    algorithm = _ALGORITHMS[jwt.alg]  # token.parse admitted only these
    alg, kid = jwt.alg, jwt.kid
    matched = False
    for key in keys.keys:
        if kid and key.kid and key.kid != kid:
            continue
        if key.alg and key.alg != alg:
            continue
        matched = True
        if not alg.startswith(_FAMILY[key.kty]):
            continue
        if key.kty == "OKP" and len(jwt.signature) != 64:
            raise JwtFailure(status.ED25519_SIGNATURE_LENGTH)
        if algorithm.verify(jwt.signing_input, key.key, jwt.signature):
            return
    raise JwtFailure(status.VERIFICATION_FAILS if matched else status.KID_ALG_MISMATCH)

"""A JSON Web Key Set as RequestAuthentication's `jwks` holds it and a `jwksUri` serves it, checked one way for
both: inline at apply (request_authentication.py) and fetched by pilot (services/pilot/jwks_resolver.py).

    jwks_problems(text) -> (errors, private_key_indexes)     errors: [] when every key is usable

A key set is a JSON object with a non-empty `keys` list (RFC 7517 section 5); each key must be one PyJWT
loads for verification: kty RSA (RS256/384/512, PS256/384/512), EC (ES256/384/512, ES256K) or OKP (EdDSA),
its `alg`, when given, one of those. Symmetric `oct` keys (HS*) are refused: a shared secret pushed to every
sidecar is a secret no longer. Keys carrying private parts (`d`) are reported apart: Istio warns about them
(warnPrivateJwksKeys); only the public parts are used. A leaf: it imports PyJWT, nothing of pilot's.
"""

from __future__ import annotations

import json
from typing import Any

import jwt

ASYMMETRIC_KTY = ("RSA", "EC", "OKP")


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, dict):
        return f"a key must be a JSON object, got {type(key).__name__}"
    kty = key.get("kty")
    if kty == "oct":
        return "symmetric `oct` keys (HS256/384/512) are not supported: only RSA, EC and OKP public keys"
    if kty not in ASYMMETRIC_KTY:
        return f"`kty` {kty!r} is not one of {', '.join(ASYMMETRIC_KTY)}"
    alg = key.get("alg")
    if alg is not None and (not isinstance(alg, str) or alg.startswith("HS") or alg == "none"):
        return f"`alg` {alg!r} is not an asymmetric signature algorithm"
    try:
        jwt.PyJWK(key)
    except (jwt.exceptions.PyJWTError, ValueError, TypeError, KeyError) as exc:
        return f"PyJWT cannot load it ({type(exc).__name__}: {exc})"[:300]
    return None


def jwks_problems(text: str) -> tuple[list[str], list[int]]:
    """(errors, indexes of keys with private material). An error names the key by its index in `keys`."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [f"not JSON: {str(exc)[:200]}"], []
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return ["a JSON Web Key Set is an object with a `keys` list"], []
    keys = document["keys"]
    if not keys:
        return ["the key set holds no keys: no token could ever verify"], []
    errors: list[str] = []
    private: list[int] = []
    for index, key in enumerate(keys):
        problem = _key_problem(key)
        if problem is not None:
            errors.append(f"keys[{index}]: {problem}")
        elif "d" in key:
            private.append(index)
    return errors, private

"""The NATS JWTs the auth callout exchanges with nats-server (the shapes of nats-io/jwt v2).

A NATS JWT is `base64url(header).base64url(claims).base64url(signature)` with header
{"typ":"JWT","alg":"ed25519-nkey"}: the signature is Ed25519 over the first two parts, made with an
nkey (nats-io's `nkeys` package does the signing; no crypto of ours). What we build:

- a user JWT (claims `nats.type` "user"): the permissions nats-server enforces on the connection,
  issued by the callout account's nkey, subject the per-connection user nkey the server sent, audience
  the account to place the user in ("$G", the global account, in nats-server's config mode), expiring;
- the authorization response (`nats.type` "authorization_response") wrapping it (or an error), audience
  the requesting server's ID, subject the same user nkey (nats-server checks both: replay protection).

What we read: the authorization request (`nats.type` "authorization_request"): the server's ID, the
user nkey it made for this connection, and the client's CONNECT options (user, pass, auth_token).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from typing import Any

import nkeys

from proto.busauth import Permissions

GLOBAL_ACCOUNT = "$G"
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
MAX_JWT = 64 * 1024  # nats-server's requests are ~1-2 KiB (more with a client certificate chain)


class JwtError(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_account_seed() -> str:
    """A fresh account nkey seed ("SA..."), the issuer nats-server's auth_callout block names."""
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT).decode()


def public_key(seed: str) -> str:
    return nkeys.from_seed(seed.encode()).public_key.decode()


def encode(claims: dict[str, Any], seed: str) -> str:
    """Sign `claims` (iss, iat and jti are set here) with the nkey `seed`."""
    kp = nkeys.from_seed(seed.encode())
    body = dict(claims, iss=kp.public_key.decode(), iat=int(time.time()), jti=secrets.token_hex(16).upper())
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(kp.sign(signing_input.encode()))}"


def decode_claims(token: str | bytes) -> dict[str, Any]:
    """The claims of a NATS JWT, unverified (the request reaches us on a subject only nats-server can
    publish to: clients of the auth account are denied it). JwtError when it is not a NATS JWT."""
    if isinstance(token, bytes):
        token = token.decode(errors="replace")
    if len(token) > MAX_JWT:
        raise JwtError(f"the JWT is over {MAX_JWT} bytes")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("not a JWT (three dot-separated parts)")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError(f"not a JWT: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") not in ("ed25519-nkey", "ed25519"):
        raise JwtError("not a NATS JWT (alg)")
    if not isinstance(claims, dict) or not isinstance(claims.get("nats"), dict):
        raise JwtError("not a NATS JWT (no nats claims)")
    return claims


def user_jwt(user_nkey: str, name: str, permissions: Permissions, seed: str, expires: float) -> str:
    """A user JWT placing the connection in the global account with `permissions`, until `expires`."""
    nats: dict[str, Any] = {
        "pub": {"allow": list(permissions.publish)} if permissions.publish else {"deny": [">"]},
        "sub": {"allow": list(permissions.subscribe)} if permissions.subscribe else {"deny": [">"]},
        "subs": -1, "data": -1, "payload": -1,
        "type": "user", "version": 2,
    }
    if permissions.responses:
        nats["resp"] = {"max": 1, "ttl": 0}
    return encode({"sub": user_nkey, "name": name, "aud": GLOBAL_ACCOUNT, "exp": int(expires), "nats": nats}, seed)


def authorization_response(user_nkey: str, server_id: str, seed: str, *, jwt: str = "", error: str = "") -> bytes:
    """The reply to one authorization request: `jwt` (a user JWT) or `error` (the connection is refused)."""
    nats: dict[str, Any] = {"type": "authorization_response", "version": 2}
    if jwt:
        nats["jwt"] = jwt
    else:
        nats["error"] = error or "not authorized"
    return encode({"sub": user_nkey, "aud": server_id, "nats": nats}, seed).encode()

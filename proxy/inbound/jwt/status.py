"""Why a JWT failed, in Envoy's words: the jwt_authn filter answers with these strings as the body and puts
them in the response code details (`jwt_authn_access_denied{Jwt_is_expired}`).

The texts are Envoy's getStatusString (envoyproxy/envoy source/common/jwt/status.cc, formerly
google/jwt_verify_lib src/status.cc); TOO_LARGE is ours (Envoy has no token size bound of its own: its
header limits are the bound, see MAX_TOKEN_BYTES in proxy/inbound/jwt/token.py).
"""

from __future__ import annotations

import functools

MISSING = "Jwt is missing"
NOT_YET_VALID = "Jwt not yet valid"
EXPIRED = "Jwt is expired"
BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
HEADER_BAD_BASE64 = "Jwt header is an invalid Base64url encoded"
HEADER_BAD_JSON = "Jwt header is an invalid JSON"
HEADER_BAD_ALG = "Jwt header [alg] field is required and must be a string"
HEADER_ALG_NOT_IMPLEMENTED = "Jwt header [alg] is not supported"
HEADER_BAD_KID = "Jwt header [kid] field is not a string"
PAYLOAD_BAD_BASE64 = "Jwt payload is an invalid Base64url encoded"
PAYLOAD_BAD_JSON = "Jwt payload is an invalid JSON"
ISS_NOT_STRING = "Jwt payload [iss] field is not a string"
SUB_NOT_STRING = "Jwt payload [sub] field is not a string"
JTI_NOT_STRING = "Jwt payload [jti] field is not a string"
AUD_NOT_STRING = "Jwt payload [aud] field is not a string or string list"
SIGNATURE_BAD_BASE64 = "Jwt signature is an invalid Base64url encoded"
ED25519_SIGNATURE_LENGTH = "Jwt ED25519 signature is wrong length"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
VERIFICATION_FAILS = "Jwt verification fails"
NO_VALID_KEYS = "Jwks doesn't have any valid public key"
KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"
TOO_LARGE = "Jwt is larger than the sidecar accepts"


def not_integer(claim: str) -> str:
    return f"Jwt payload [{claim}] field is not an integer"


def out_of_range(claim: str) -> str:
    return f"Jwt payload [{claim}] field is not a positive 64 bit integer"


class JwtFailure(Exception):
    """One token did not verify; `status` is one of the texts above."""

    __slots__ = ("status",)

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


@functools.lru_cache(maxsize=128)  # the statuses are a small fixed set
def details(status: str) -> str:
    """Envoy's response code details for a failure (jwt_authn filter.cc generateRcDetails: whitespace to `_`)."""
    return "jwt_authn_access_denied{" + "".join("_" if c.isspace() else c for c in status) + "}"

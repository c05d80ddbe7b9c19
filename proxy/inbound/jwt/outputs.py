"""What a verified token hands on: the RequestAuth authorization reads, and the header values of
outputClaimToHeaders.

    request_auth(jwt) -> RequestAuth       principal `<iss>/<sub>`, audiences (aud as a list), presenter (azp)
    claim_header(payload, claim) -> bytes | None

Claims for authorization (request.auth.claims[...]) are the payload as decoded, nested objects kept, with
Istio's normalization: `scope` and `permission`, when strings, become the list of their space-separated
words (Istio sets Envoy's normalize_payload_in_metadata space_delimited_claims to these two,
pilot/pkg/security/authn/policy_applier.go buildSpaceDelimitedClaims; Envoy authenticator.cc
setPayloadMetadata), so `request.auth.claims[scope]` matches one scope of "read write".

A claim copied to a header is looked up as Envoy's StructUtils::GetValue does: `a.b` walks nested objects
(every step but the last must be an object). Strings go as they are, numbers as Envoy prints them
(a non-negative whole number as an integer, anything else with six decimals, std::to_string), booleans
as true/false; a list, an object, an empty string or a missing claim adds no header (Envoy
addJWTClaimToHeader). A value holding CR, LF or NUL adds no header either: it cannot be a header value.
"""

from __future__ import annotations

from typing import Any

from proxy.core.downstream import RequestAuth
from proxy.inbound.jwt.token import Jwt

SPACE_DELIMITED_CLAIMS = ("permission", "scope")
_UINT64 = float(1 << 64)


def request_auth(jwt: Jwt) -> RequestAuth:
    claims = jwt.payload
    if any(isinstance(claims.get(c), str) and claims[c].strip(" ") for c in SPACE_DELIMITED_CLAIMS):
        claims = dict(claims)
        for name in SPACE_DELIMITED_CLAIMS:
            value = claims.get(name)
            if isinstance(value, str) and value.strip(" "):
                claims[name] = [word for word in value.split(" ") if word]
    azp = jwt.payload.get("azp")
    return RequestAuth(f"{jwt.iss}/{jwt.sub}", list(jwt.audiences), azp if isinstance(azp, str) else "", claims)


def _number(value: float) -> str:
    """Envoy's convertClaimDoubleToString: the JSON number as a double."""
    double = float(value)
    if double < 0 or double >= _UINT64 or not double.is_integer():
        return "%f" % double
    return str(int(double))


def claim_header(payload: dict[str, Any], claim: str) -> bytes | None:
    """The header value for `claim` (dotted path into nested objects), or None: no header."""
    value: Any = payload
    for step in claim.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = _number(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    if not text or "\r" in text or "\n" in text or "\0" in text:
        return None
    return text.encode("utf-8")

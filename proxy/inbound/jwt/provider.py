"""One jwtRule compiled once per push: its issuer, audiences, keys, token locations, outputs and cache.

    Provider(jwt_provider).verify(token, now) -> Verified     raises JwtFailure (proxy/inbound/jwt/status.py)

The checks and their order are Envoy's authenticator (envoyproxy/envoy
source/extensions/filters/http/jwt_authn/authenticator.cc startVerify): parse; the token's `iss` must be
the rule's issuer ("Jwt issuer is not configured"); then time, with Envoy's default clock skew of 60 s
(`nbf` later than now + skew: "Jwt not yet valid"; `exp` set and now past exp + skew: "Jwt is expired");
then audiences (a rule without audiences checks none; with some, one of the token's `aud` must be among
them, compared after dropping an http:// or https:// scheme and a trailing `/`, Envoy's CheckAudience);
then the keys (proxy/inbound/jwt/signature.py). So an expired token fails as expired whatever its
signature. What passed all of it is kept in the rule's cache (proxy/inbound/jwt/cache.py).
"""

from __future__ import annotations

import re

from proto.xds import JwtProvider
from proxy.core.downstream import RequestAuth
from proxy.inbound.jwt import status
from proxy.inbound.jwt.cache import TokenCache
from proxy.inbound.jwt.jwks import KeySet, failed_fetch, parse_jwks
from proxy.inbound.jwt.locations import Locations
from proxy.inbound.jwt.outputs import claim_header, request_auth
from proxy.inbound.jwt.signature import check_signature
from proxy.inbound.jwt.status import JwtFailure
from proxy.inbound.jwt.token import Jwt, parse

CLOCK_SKEW_S = 60  # Envoy JwtProvider.clock_skew_seconds default; Istio does not set it
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


def sanitize_audience(aud: str) -> str:
    """Envoy's CheckAudience: scheme prefix and trailing slash do not count."""
    if aud.startswith("http://"):
        aud = aud[7:]
    elif aud.startswith("https://"):
        aud = aud[8:]
    return aud[:-1] if aud.endswith("/") else aud


class Verified:
    """A token that passed: the RequestAuth for authorization and the headers to add (outputPayloadToHeader,
    then outputClaimToHeaders in the rule's order), both computed once per token."""

    __slots__ = ("auth", "outputs")

    def __init__(self, auth: RequestAuth, outputs: list[tuple[bytes, bytes]]) -> None:
        self.auth = auth
        self.outputs = outputs


class Provider:
    __slots__ = ("source", "issuer", "audiences", "keys", "locations", "forward", "payload_header", "claim_headers",
                 "output_names", "cache")

    def __init__(self, provider: JwtProvider) -> None:
        rule = provider.rule
        self.source = provider.source
        self.issuer = rule.issuer
        self.audiences = frozenset(sanitize_audience(a) for a in rule.audiences or ())
        self.keys: KeySet = failed_fetch(provider.jwks_error) if provider.jwks_error else parse_jwks(rule.jwks)
        self.locations = Locations.of(rule)
        self.forward = bool(rule.forward_original_token)
        payload = rule.output_payload_to_header or ""
        self.payload_header = payload.lower().encode("latin-1") if _HEADER_NAME.fullmatch(payload) else b""
        self.claim_headers = tuple((c.header.lower().encode("latin-1"), c.claim)
                                   for c in rule.output_claim_to_headers or () if _HEADER_NAME.fullmatch(c.header))
        # what a client sends under these names never reaches the app (Envoy sanitizeHeaders)
        self.output_names = frozenset(([self.payload_header] if self.payload_header else [])
                                      + [name for name, _ in self.claim_headers])
        self.cache: TokenCache[Verified] = TokenCache()

    def verify(self, token: bytes, now: int) -> Verified:
        """The token verified for this rule at unix time `now` (seconds), else JwtFailure."""
        hit = self.cache.get(token, now)
        if hit is not None:
            return hit
        jwt = parse(token)
        if self.issuer and jwt.iss != self.issuer:
            raise JwtFailure(status.UNKNOWN_ISSUER)
        if now + CLOCK_SKEW_S < jwt.nbf:
            raise JwtFailure(status.NOT_YET_VALID)
        if jwt.exp and now > jwt.exp + CLOCK_SKEW_S:
            raise JwtFailure(status.EXPIRED)
        if self.audiences and not any(sanitize_audience(a) in self.audiences for a in jwt.audiences):
            raise JwtFailure(status.AUDIENCE_NOT_ALLOWED)
        check_signature(jwt, self.keys)
        verified = Verified(request_auth(jwt), self._outputs(jwt))
        self.cache.put(token, jwt.exp + CLOCK_SKEW_S if jwt.exp else 0, verified)
        return verified

    def _outputs(self, jwt: Jwt) -> list[tuple[bytes, bytes]]:
        outputs = [(self.payload_header, jwt.payload_b64)] if self.payload_header else []
        for name, claim in self.claim_headers:
            value = claim_header(jwt.payload, claim)
            if value is not None:
                outputs.append((name, value))
        return outputs

"""The authentication stage of the inbound pipeline: RequestAuthentication's jwtRules, compiled once per push.

    JwtStage().update(security) -> Check | None     None when no RequestAuthentication applies (no stage code)
    Authenticator(providers)(head)                  sets head.auth, or raises Unauthenticated (401) /
                                                    AudienceNotAllowed (403)

How the rules combine is Istio's (pilot/pkg/security/authn/policy_applier.go convertToEnvoyJwtConfig) as
Envoy evaluates it (source/extensions/filters/http/jwt_authn/verifier.cc). Rules are sorted by issuer;
one rule is `requires_any [rule, allow_missing]`, several are
`requires_any [rule1, ..., ruleN, requires_all [any(rule1, allow_missing), ...]]`. Hence:
- each rule looks only at its own locations, and every token found there must verify for that rule
  (two tokens, one bad: the bad one fails the rule, Envoy authenticator.cc doneWithStatus);
- the first rule (by issuer) whose tokens all verify authenticates the request: its token's RequestAuth
  goes to head.auth, its outputs are added, its tokens removed unless forwardOriginalToken;
- no token in any rule's locations: the request goes on anonymous (head.auth None), for authorization
  to decide (requestPrincipals);
- otherwise it is refused with the status Envoy's AnyVerifier reports: the failure of the first rule that
  found a token (the requires_all branch) if that is a real failure, else the last real failure, else
  "Jwt issuer is not configured". A token whose issuer no rule has therefore gets that status.
The refusal is 401 with `www-authenticate: Bearer realm="<scheme>://<host><path, 256 bytes at most>",
error="invalid_token"` and the status as body, except "Audiences in Jwt are not allowed", which Envoy
answers 403 (filter.cc onComplete). A CORS preflight (OPTIONS with Origin and
Access-Control-Request-Method) passes untouched (Istio sets bypass_cors_preflight).

Before anything else, every header a rule outputs (outputPayloadToHeader, outputClaimToHeaders) is removed
from the request, so a client cannot send its own x-jwt-payload (Envoy's sanitizeHeaders, here for all
rules at once and on CORS preflights too: Envoy only sanitizes for the rules it gets to, and not on a
preflight it bypasses). The same names with `_` for `-` (and back) go too: CGI and WSGI servers read
`X_Jwt_Payload` as `X-Jwt-Payload`. A changed head is marked `edited`, so it
goes upstream as changed rather than as received (proxy/http/exchange_connect.py).

Deliberately simpler than Envoy: a rule that fails after some of its tokens verified leaves no trace (Envoy
would already have added that token's outputs and removed it from the request).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from proto.xds import JwtProvider, WorkloadSecurity
from proxy.core.errors import AudienceNotAllowed, Unauthenticated
from proxy.core.request import RequestHead
from proxy.inbound.jwt import status
from proxy.inbound.jwt.locations import remove
from proxy.inbound.jwt.status import JwtFailure
from runtime.log import get_logger

log = get_logger("proxy.jwt")

MAX_REALM_PATH = 256  # Envoy filter.cc MaximumUriLength: the path part of the realm in www-authenticate
_NOT_REAL = (status.MISSING, status.UNKNOWN_ISSUER)
# the realm is a quoted-string in a header: control characters dropped, a quote escaped
_REALM_SAFE = str.maketrans({**{chr(c): None for c in (*range(32), 127)}, '"': "%22"})


def final_status(statuses: Sequence[str]) -> str:
    """The status a refused request gets from its rules' statuses (none OK, not all MISSING): Envoy's
    AnyVerifier over [rule1..ruleN] plus, with several rules, the requires_all branch."""
    children = list(statuses)
    if len(children) > 1:
        children.append(next(s for s in children if s != status.MISSING))
    final = status.MISSING
    for child in children:
        if child not in _NOT_REAL or final == status.MISSING:
            final = child
    return final


def _realm(head: RequestHead) -> str:
    host = head.header(b"host")
    scheme = "https" if head.downstream.principal else "http"
    uri = f"{scheme}://{host.decode('latin-1') if host is not None else head.host}{head.path[:MAX_REALM_PATH]}"
    return uri.translate(_REALM_SAFE)


def refusal(failure: str, head: RequestHead) -> Unauthenticated:
    """The error for a refused request: 401 (403 for audiences) with Envoy's body, www-authenticate and details."""
    value = f'Bearer realm="{_realm(head)}"'
    if failure != status.MISSING:
        value += ', error="invalid_token"'
    header = b"www-authenticate: " + value.encode("latin-1", "replace") + b"\r\n"
    kind = AudienceNotAllowed if failure == status.AUDIENCE_NOT_ALLOWED else Unauthenticated
    return kind(failure, header, status.details(failure))


class Authenticator:
    """The compiled check for one set of JwtProviders; `clock` gives unix time in seconds."""

    __slots__ = ("providers", "sanitize", "wanted", "clock")

    def __init__(self, providers: Sequence[JwtProvider], clock: Callable[[], float] = time.time) -> None:
        # PyJWT and cryptography (~1.5 MB with the JWKS parsing) load at the first push with a RequestAuthentication
        # for this workload, not in every sidecar (tests/proxy/test_sidecar_imports.py)
        from proxy.inbound.jwt.provider import Provider

        self.providers = tuple(sorted((Provider(p) for p in providers), key=lambda p: p.issuer))
        for p in self.providers:
            if p.keys.problem:
                log.warning("RequestAuthentication rule without usable keys: its tokens fail verification",
                            source=p.source, issuer=p.issuer, problem=p.keys.problem)
        # each name also with `_` for `-` and back: CGI/WSGI apps read X_Jwt_Payload as X-Jwt-Payload
        names = frozenset().union(*(p.output_names for p in self.providers))
        self.sanitize = names | {n.replace(b"-", b"_") for n in names} | {n.replace(b"_", b"-") for n in names}
        wanted = set().union(*(p.locations.header_names for p in self.providers))
        if any(p.locations.cookies for p in self.providers):
            wanted.add(b"cookie")
        self.wanted = frozenset(wanted)
        self.clock = clock

    def __call__(self, head: RequestHead) -> None:
        headers = head.headers
        sanitize = self.sanitize
        if sanitize and any(h[0] in sanitize for h in headers):  # before the preflight bypass: every request
            headers = head.headers = [h for h in headers if h[0] not in sanitize]
            head.edited = True
        if head.method == "OPTIONS" and head.header(b"origin") and head.header(b"access-control-request-method"):
            return  # CORS preflight carries no credentials (Envoy bypass_cors_preflight, set by Istio)
        wanted = self.wanted
        seen = [h for h in headers if h[0] in wanted]
        now = int(self.clock())
        statuses = []
        for provider in self.providers:
            found = provider.locations.extract(head, seen)
            if not found:
                statuses.append(status.MISSING)
                continue
            found.reverse()  # Envoy verifies the last token found first
            try:
                verified = [provider.verify(token, now) for token, _, _ in found]
            except JwtFailure as failure:
                statuses.append(failure.status)
                continue
            for (_, kind, name), good in zip(found, verified):
                if good.outputs:
                    head.headers = head.headers + good.outputs
                    head.edited = True
                if not provider.forward:
                    remove(head, kind, name)
            head.auth = verified[-1].auth
            return
        if all(s == status.MISSING for s in statuses):
            return
        raise refusal(final_status(statuses), head)


class JwtStage:
    """The authentication stage across pushes: recompiled only when the sidecar's jwt rules change."""

    __slots__ = ("source", "check")

    def __init__(self) -> None:
        self.source: list[JwtProvider] = []
        self.check: Authenticator | None = None

    def update(self, security: WorkloadSecurity | None) -> Authenticator | None:
        providers = security.jwt if security is not None else []
        if providers != self.source:
            self.source = list(providers)
            self.check = Authenticator(providers) if providers else None
        return self.check

"""Semantic checks of a RequestAuthentication: Istio's ValidateRequestAuthentication and validateJwtRule
(pkg/config/validation/validation.go) and the CRD's rules, each problem with its path (spec.jwtRules[0].jwksUri).

    request_authentication(spec, f)
    jwks_uri_problem(uri) -> str | None

Errors: an empty `issuer` (Isthmus requires it: the request principal is <iss>/<sub>); a rule without `jwks`
or `jwksUri` whose issuer is not an http(s) URL (its keys are found by OpenID discovery at
<issuer>/.well-known/openid-configuration, as Istio); an empty audience, fromParams or fromCookies entry; a fromHeaders entry without a
valid `name`; both `jwks` and `jwksUri`; a jwksUri that is not an http(s) URL with a host, or longer than 2048
characters; an inline `jwks` that is not a JSON Web Key Set of keys PyJWT loads (validate/jwks.py); an
outputClaimToHeaders entry without header or claim, or whose header is not `^[-_A-Za-z0-9]+$` (the CRD) or is
one the sidecar must own (hop-by-hop, Host, Content-Length); the same for outputPayloadToHeader; a `timeout`
that is not a duration of at least 1ms; more than 4096 jwtRules (the CRD's maxItems); the selector's rules;
targetRef/targetRefs (Gateway API attachment: a selector picks workloads).
Warnings: keys with private material in an inline `jwks` (Istio's warnPrivateJwksKeys); two rules with the
same issuer (Istio accepts it; a token is then tried against each rule's keys, which is rarely meant).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from proto.security import JwtRule, RequestAuthenticationSpec
from services.pilot.validate.checks import HEADER_NAME, check_selector
from services.pilot.validate.durations import duration_ms
from services.pilot.validate.findings import Findings
from services.pilot.validate.jwks import jwks_problems

MAX_JWT_RULES = 4096  # the CRD's maxItems of spec.jwtRules
MAX_JWKS_URI = 2048  # the CRD's maxLength of jwksUri
STRICT_HEADER = re.compile(r"^[-_A-Za-z0-9]+\Z")  # Istio's validStrictHeaderNameRegex
# headers the sidecar itself frames or forwards by hop: a claim written into one would break the exchange
RESERVED_HEADERS = frozenset(("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
                              "trailer", "host", "content-length"))


def jwks_uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be fetched as a jwksUri (Istio's ParseJwksURI and the CRD's rules), or None."""
    if len(uri) > MAX_JWKS_URI:
        return f"jwksUri is {len(uri)} characters, more than {MAX_JWKS_URI}"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return f"`{uri[:100]}` is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"url must have scheme http:// or https://, got `{uri[:100]}`"
    if not parts.hostname:
        return f"`{uri[:100]}` has no host"
    if port == 0:
        return f"`{uri[:100]}`: port 0 is not a port"
    if any(c.isspace() for c in uri):
        return f"`{uri[:100]}` contains whitespace"
    return None


def _output_header(header: str, path: str, f: Findings) -> None:
    if not STRICT_HEADER.match(header):
        f.error(path, f"header name `{header}` is not a valid header name (letters, digits, '-' and '_')")
    elif header.lower() in RESERVED_HEADERS:
        f.error(path, f"`{header}` is a header the sidecar frames or forwards per hop; a claim cannot be written "
                      "into it")


def request_authentication(spec: RequestAuthenticationSpec, f: Findings) -> None:
    for field, value in (("targetRef", spec.target_ref), ("targetRefs", spec.target_refs)):
        if value is not None:
            f.error(f"spec.{field}", "targetRef/targetRefs (Gateway API attachment) are not supported by Isthmus: "
                                     "a `selector.matchLabels` picks the workloads (or none: the whole namespace)")
    check_selector(spec.selector, f)
    rules = spec.jwt_rules or []
    if len(rules) > MAX_JWT_RULES:
        f.error("spec.jwtRules", f"{len(rules)} jwtRules, more than {MAX_JWT_RULES}")
        return
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        path = f"spec.jwtRules[{i}]"
        _jwt_rule(rule, path, f)
        if rule.issuer in seen:
            f.warn(f"{path}.issuer", f"issuer `{rule.issuer}` is also in jwtRules[{seen[rule.issuer]}]: a token of "
                                     "this issuer is tried against the keys of each rule (as in Istio)")
        else:
            seen[rule.issuer] = i


def _non_empty(values: list[str] | None, path: str, what: str, f: Findings) -> None:
    for k, value in enumerate(values or []):
        if value == "":
            f.error(f"{path}[{k}]", f"{what} must be non-empty string")


def _jwt_rule(rule: JwtRule, path: str, f: Findings) -> None:
    if rule.issuer == "":
        f.error(f"{path}.issuer", "issuer must be non-empty string")
    _non_empty(rule.audiences, f"{path}.audiences", "audience", f)
    if rule.jwks is not None and rule.jwks_uri is not None:
        f.error(path, "only one of jwks or jwksUri can be set")
    if rule.jwks_uri is not None:
        problem = jwks_uri_problem(rule.jwks_uri)
        if problem:
            f.error(f"{path}.jwksUri", problem)
    elif rule.jwks is None and rule.issuer and jwks_uri_problem(rule.issuer):
        f.error(f"{path}.issuer", f"without `jwks` or `jwksUri` the keys are found by OpenID discovery at "
                                  f"<issuer>/.well-known/openid-configuration, so the issuer `{rule.issuer[:100]}` "
                                  "must be an http(s) URL; or set `jwksUri` or `jwks`")
    if rule.jwks is not None:
        errors, private = jwks_problems(rule.jwks)
        for error in errors:
            f.error(f"{path}.jwks", f"jwks parse error: {error}")
        for index in private:
            f.warn(f"{path}.jwks", f"jwks key at index {index} contains private key material; only public keys are "
                                   "used for verification")
    for k, header in enumerate(rule.from_headers or []):
        if header.name == "":
            f.error(f"{path}.fromHeaders[{k}].name", "location header name must be non-empty string")
        elif not HEADER_NAME.match(header.name):
            f.error(f"{path}.fromHeaders[{k}].name", f"`{header.name}` is not a valid header name")
    _non_empty(rule.from_params, f"{path}.fromParams", "location query", f)
    _non_empty(rule.from_cookies, f"{path}.fromCookies", "cookie name", f)
    for k, output in enumerate(rule.output_claim_to_headers or []):
        here = f"{path}.outputClaimToHeaders[{k}]"
        if output.header == "" or output.claim == "":
            f.error(here, "outputClaimToHeaders header and claim value must be non-empty string")
            continue
        _output_header(output.header, f"{here}.header", f)
    if rule.output_payload_to_header is not None:
        _output_header(rule.output_payload_to_header, f"{path}.outputPayloadToHeader", f)
    if rule.timeout is not None:
        duration_ms(rule.timeout, f"{path}.timeout", f)

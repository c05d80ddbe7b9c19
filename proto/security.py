"""Istio security.istio.io resources (v1 and v1beta1): PeerAuthentication, AuthorizationPolicy,
RequestAuthentication.

References: https://istio.io/latest/docs/reference/config/security/peer_authentication/,
.../authorization-policy/, .../request_authentication/ and .../jwt/ (JWTRule).
Fields not declared here are rejected at decode time with their path (IstioStruct forbids unknown
fields). Modes are plain strings checked by the validator (services/pilot/validate/peer_authentication.py),
so its message can list the values Istio knows.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proto.base import IstioStruct

# PeerAuthentication.MutualTLS.Mode, as Istio spells them. UNSET inherits the parent scope's mode.
UNSET = "UNSET"
DISABLE = "DISABLE"
PERMISSIVE = "PERMISSIVE"
STRICT = "STRICT"
MTLS_MODES = (UNSET, DISABLE, PERMISSIVE, STRICT)


class PeerMutualTLS(IstioStruct):
    """PeerAuthentication.MutualTLS; an unset mode is UNSET."""

    mode: str | None = None


class PeerSelector(IstioStruct):
    """istio.type.v1beta1.WorkloadSelector: the workloads of the policy's namespace whose labels include these."""

    match_labels: dict[str, str] | None = None


class PeerAuthenticationSpec(IstioStruct):
    """Istio's PeerAuthentication has no targetRef: it is declared here only so the validator can refuse it
    with a reason (a selector picks workloads) instead of calling it misspelled."""

    selector: PeerSelector | None = None
    mtls: PeerMutualTLS | None = None
    # the workload port (the port the app listens on, not the service port) -> its mode, as Istio
    port_level_mtls: dict[int, PeerMutualTLS] | None = None
    target_ref: Any = None  # refused by the validator
    target_refs: Any = None  # refused by the validator


# --- AuthorizationPolicy ------------------------------------------------------------------------------
# AuthorizationPolicy.Action as Istio spells them; an unset action is ALLOW. CUSTOM is refused at apply.
ALLOW = "ALLOW"
DENY = "DENY"
AUDIT = "AUDIT"
CUSTOM = "CUSTOM"
AUTHZ_ACTIONS = (ALLOW, DENY, AUDIT, CUSTOM)


class AuthzSource(IstioStruct):
    """Rule.From.source: the peer. Every list is ORed within itself; the set fields are ANDed."""

    principals: list[str] | None = None
    not_principals: list[str] | None = None
    request_principals: list[str] | None = None
    not_request_principals: list[str] | None = None
    namespaces: list[str] | None = None
    not_namespaces: list[str] | None = None
    ip_blocks: list[str] | None = None
    not_ip_blocks: list[str] | None = None
    remote_ip_blocks: list[str] | None = None
    not_remote_ip_blocks: list[str] | None = None


class AuthzOperation(IstioStruct):
    """Rule.To.operation: what is asked. Istio's ports are strings ("8080"); YAML integers are taken too."""

    hosts: list[str] | None = None
    not_hosts: list[str] | None = None
    ports: list[str | int] | None = None
    not_ports: list[str | int] | None = None
    methods: list[str] | None = None
    not_methods: list[str] | None = None
    paths: list[str] | None = None
    not_paths: list[str] | None = None


class AuthzFrom(IstioStruct):
    source: AuthzSource | None = None


class AuthzTo(IstioStruct):
    operation: AuthzOperation | None = None


class AuthzCondition(IstioStruct):
    """Rule.Condition: `key` is one of Istio's condition keys (request.headers[x-token], source.ip ...)."""

    key: str
    values: list[str] | None = None
    not_values: list[str] | None = None


class AuthzRule(IstioStruct):
    """One rule: it matches when all of from, to and when match (each list ORed within itself; an absent
    list matches anything). `from` is a Python keyword, hence `from_`."""

    from_: list[AuthzFrom] | None = msgspec.field(default=None, name="from")
    to: list[AuthzTo] | None = None
    when: list[AuthzCondition] | None = None


class AuthorizationPolicySpec(IstioStruct):
    """No `rules` on an ALLOW policy matches nothing (denies all); `rules: [{}]` matches everything.
    targetRef/targetRefs (Gateway API attachment) and `provider` (CUSTOM) are declared only so the
    validator can refuse them with a reason."""

    selector: PeerSelector | None = None
    rules: list[AuthzRule] | None = None
    action: str | None = None
    provider: Any = None  # CUSTOM's extension provider: refused by the validator
    target_ref: Any = None  # refused by the validator
    target_refs: Any = None  # refused by the validator


# --- RequestAuthentication ----------------------------------------------------------------------------
class JwtHeader(IstioStruct):
    """JWTHeader: a header to read the token from, with `prefix` (e.g. "Bearer ") stripped."""

    name: str
    prefix: str | None = None


class ClaimToHeader(IstioStruct):
    header: str
    claim: str


class JwtRule(IstioStruct):
    """JWTRule (istio.io/latest/docs/reference/config/security/jwt/). With neither fromHeaders, fromParams
    nor fromCookies, the token is read from `Authorization: Bearer <token>` and the `access_token` query
    parameter, as Istio. `jwks` is the JWKS JSON text; pilot fills it in from `jwksUri` for the proxies."""

    issuer: str
    audiences: list[str] | None = None
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JwtHeader] | None = None
    from_params: list[str] | None = None
    from_cookies: list[str] | None = None
    output_payload_to_header: str | None = None
    output_claim_to_headers: list[ClaimToHeader] | None = None
    forward_original_token: bool | None = None
    timeout: str | None = None  # jwksUri fetch timeout (a duration, Istio's default 5s)


class RequestAuthenticationSpec(IstioStruct):
    selector: PeerSelector | None = None
    jwt_rules: list[JwtRule] | None = None
    target_ref: Any = None  # refused by the validator
    target_refs: Any = None  # refused by the validator

"""Which AuthorizationPolicies and RequestAuthentications apply to a workload, as Istio picks them.

    Authz(state, jwks).resolve(namespace, labels) -> Applied(authorization, jwt, revision)
    JwksLookup: (issuer, jwks_uri, timeout_s) -> (key set JSON | None, error)     pilot's jwks_resolver

Istio's rules (pilot/pkg/model/authorization.go ListAuthorizationPolicies, authentication.go
getConfigsForWorkload, policyattachment.go ShouldAttachPolicy/isSelected):
- a policy is looked up in the root namespace and in the workload's namespace, and applies when it has no
  selector or its matchLabels are a subset of the workload's labels (an empty matchLabels selects all, like
  none). So a root-namespace policy without selector applies to every workload of the mesh, one with a
  selector to the matching workloads of every namespace; elsewhere to the namespace's (matching) workloads;
- AuthorizationPolicies: the root namespace's first, then the workload's namespace's; RequestAuthentications:
  the workload's namespace's first, then the root's (the order of Istio's lookups); within a namespace
  oldest first (etcd create revision, then name, then namespace: Istio's creation time, name, namespace).
- every jwtRule of every applying RequestAuthentication is a provider (Istio merges them all).
Pushed rules are Istio's structs as the user wrote them (validated, not normalized); a jwtRule with `jwksUri`
(or with neither jwks nor jwksUri: OpenID discovery from its issuer) gets `jwks` from the lookup, never
blocking: the lookup answers from its cache and fetches in the background. Built once per compile; resolve()
is memoized per (namespace, labels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import msgspec

from proto.security import ALLOW, JwtRule
from proto.xds import AuthzPolicy, JwtProvider
from services.pilot.compile.state import MeshState, Stored
from services.pilot.validate.durations import parse_duration

JwksLookup = Callable[[str, "str | None", float], "tuple[str | None, str]"]
DEFAULT_JWKS_TIMEOUT = 5.0  # seconds: JWTRule.timeout's default in Istio

NOT_FETCHED = "jwksUri is not fetched: this compile has no JWKS resolver"


def no_resolver(issuer: str, jwks_uri: str | None, timeout: float) -> tuple[str | None, str]:
    return None, NOT_FETCHED


class Applied(NamedTuple):
    authorization: tuple[AuthzPolicy, ...] = ()
    jwt: tuple[JwtProvider, ...] = ()
    revision: int = 0  # the highest mod revision of the policies that apply


NONE = Applied()


def _by_namespace(state: MeshState, kind: str) -> dict[str, list[Stored]]:
    out: dict[str, list[Stored]] = {}
    for stored in sorted(state.resources.get(kind, {}).values(), key=lambda stored: stored.policy_order):
        out.setdefault(stored.resource.metadata.namespace, []).append(stored)
    return out


def timeout_seconds(rule: JwtRule) -> float:
    """The rule's jwksUri fetch timeout in seconds (validated; Istio's default 5 s)."""
    return parse_duration(rule.timeout) / 1e9 if rule.timeout else DEFAULT_JWKS_TIMEOUT


class Authz:
    """The state's AuthorizationPolicies and RequestAuthentications, indexed by namespace, each policy turned
    into its pushed form once."""

    def __init__(self, state: MeshState, jwks: JwksLookup | None = None) -> None:
        self.root = state.root_namespace
        self.jwks = jwks or no_resolver
        self.policies = _by_namespace(state, "AuthorizationPolicy")
        self.request_authns = _by_namespace(state, "RequestAuthentication")
        self._authz: dict[str, AuthzPolicy] = {}
        self._jwt: dict[str, tuple[JwtProvider, ...]] = {}
        self._memo: dict[tuple[str, frozenset[tuple[str, str]]], Applied] = {}

    def resolve(self, namespace: str, labels: dict[str, str]) -> Applied:
        if not self.policies and not self.request_authns:
            return NONE
        key = (namespace, frozenset(labels.items()))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._resolve(namespace, labels)
        return found

    def _resolve(self, namespace: str, labels: dict[str, str]) -> Applied:
        revision = 0
        authorization: list[AuthzPolicy] = []
        for stored in self._applying(self.policies, (self.root, namespace), labels):
            authorization.append(self._policy(stored))
            revision = max(revision, stored.revision)
        jwt: list[JwtProvider] = []
        for stored in self._applying(self.request_authns, (namespace, self.root), labels):
            jwt.extend(self._providers(stored))
            revision = max(revision, stored.revision)
        if not authorization and not jwt:
            return NONE
        return Applied(tuple(authorization), tuple(jwt), revision)

    @staticmethod
    def _applying(index: dict[str, list[Stored]], namespaces: tuple[str, str], labels: dict[str, str]
                  ) -> list[Stored]:
        out: list[Stored] = []
        for ns in dict.fromkeys(namespaces):  # the workload may live in the root namespace
            for stored in index.get(ns, ()):
                if all(labels.get(k) == v for k, v in stored.selector_labels.items()):
                    out.append(stored)
        return out

    def _policy(self, stored: Stored) -> AuthzPolicy:
        found = self._authz.get(stored.source)
        if found is None:
            spec = stored.resource.spec
            found = self._authz[stored.source] = AuthzPolicy(name=stored.source, action=spec.action or ALLOW,
                                                              rules=list(spec.rules or []))
        return found

    def _providers(self, stored: Stored) -> tuple[JwtProvider, ...]:
        found = self._jwt.get(stored.source)
        if found is None:
            providers = []
            for rule in stored.resource.spec.jwt_rules or []:
                error = ""
                if rule.jwks is None:
                    keys, error = self.jwks(rule.issuer, rule.jwks_uri, timeout_seconds(rule))
                    rule = msgspec.structs.replace(rule, jwks=keys)
                providers.append(JwtProvider(source=stored.source, rule=rule, jwks_error=error))
            found = self._jwt[stored.source] = tuple(providers)
        return found

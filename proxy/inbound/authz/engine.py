"""A workload's AuthorizationPolicies compiled once per push into the inbound checks, as istio builds Envoy's
RBAC filters (pilot/pkg/security/authz/builder/builder.go) and Envoy runs them
(source/extensions/filters/http/rbac/rbac_filter.cc, network/rbac/rbac_filter.cc, common/rbac/engine_impl.cc):

- three filters in this order: AUDIT (Envoy's LOG action: a match is logged, never blocks), DENY (any match:
  denied), ALLOW (with at least one ALLOW policy on the workload, a request no ALLOW rule matches is denied;
  with none, allowed). A policy without rules is one rule that never matches (`spec: {}` as ALLOW denies all);
  `rules: [{}]` is one rule that matches everything.
- every rule is one Envoy policy named `ns[<ns>]-policy[<name>]-rule[<index>]`; Envoy keeps them in a
  std::map, so the policy a denial names is the first match in that name order.
- HTTP: a denial raises AccessDenied (403 `RBAC: access denied`) and the access log's details read
  `rbac_access_denied_matched_policy[<policy>]` (`[none]` when no ALLOW rule matched), Envoy's
  %RESPONSE_CODE_DETAILS%; an AUDIT match adds `rbac_audit_matched_policy[<policy>]` (Envoy keeps that in
  dynamic metadata, `access_log_hint`; the line is how our access log shows it).
- TCP: the same rules compiled for a TCP filter chain (rules.py: HTTP-only fields), checked once when a
  connection is accepted; Envoy's network RBAC filter checks on the first byte and closes the connection.
- paths: a request is checked under each reading of its path (paths.py) and passes only if it passes
  under both: denied when any reading is denied, audited when any reading is audited.
- the HTTP decision is memoised per distinct combination of the attributes the rules read (memo.py), unless
  a rule reads request.auth.* (a verified JWT's claims); the memo is per push, bounded.

    Authorization(policies)            .http(head) raises AccessDenied; .tcp(downstream) -> (allowed, details);
                                       .rules: the compiled rule count (for /config_dump)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from proto.security import ALLOW, AUDIT, DENY
from proto.xds import AuthzPolicy
from proxy.core.downstream import Downstream
from proxy.core.errors import AccessDenied
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.inbound.authz.leaves import Leaf
from proxy.inbound.authz.keyed import KeySpec, memoised
from proxy.inbound.authz.memo import ALLOWED, Decision, Memo, key_spec
from proxy.inbound.authz.paths import readings
from proxy.inbound.authz.rules import compile_rule

Entries = tuple[tuple[str, Leaf], ...]  # (Envoy policy name, predicate), in Envoy's name order
Check = Callable[[RequestHead], None]
TcpCheck = Callable[[Downstream], "tuple[bool, str]"]

NONE = "none"  # Envoy's policy id when no ALLOW rule matched


def policy_id(name: str, index: int) -> str:
    """`ns[<ns>]-policy[<name>]-rule[<i>]` for AuthzPolicy.name "ns/name"; whitespace as "_" (Envoy's
    responseDetail sanitizes it so access-log fields stay one token)."""
    ns, _, short = name.partition("/")
    return re.sub(r"\s", "_", f"ns[{ns}]-policy[{short}]-rule[{index}]")


def denied_detail(policy: str) -> str:
    return f"rbac_access_denied_matched_policy[{policy}]"


def audit_detail(policy: str) -> str:
    return f"rbac_audit_matched_policy[{policy}]"


def _first(entries: Entries, ds: Downstream, head: RequestHead | None, path: str) -> str | None:
    for pid, pred in entries:
        if pred(ds, head, path):
            return pid
    return None


def _uses_paths(policies: Sequence[AuthzPolicy]) -> bool:
    return any(op.operation is not None and (op.operation.paths or op.operation.not_paths)
               for p in policies for r in p.rules for op in (r.to or ()))


class Authorization:
    """The checks one push's policies make. `http` is None when there is no policy (no stage at all)."""

    def __init__(self, policies: Sequence[AuthzPolicy]) -> None:
        self.policies = list(policies)
        self.rules = 0
        self.reads: set[str] = set()  # the attribute names the HTTP rules read
        http = {action: self._compile(action, False) for action in (AUDIT, DENY, ALLOW)}
        tcp = {action: self._compile(action, True) for action in (AUDIT, DENY, ALLOW)}
        has_allow = any(p.action == ALLOW for p in policies)
        self.http: Check | None = None
        # the header names the HTTP check reads that the listener may note for it (core/request.py HeaderPicks)
        self.picks: frozenset[bytes] | None = None
        if policies:
            uses_paths = _uses_paths(policies)
            decide = _http_decision(http[AUDIT], http[DENY], http[ALLOW], has_allow, uses_paths)
            # a path is read (and %00 refused) whenever a policy has paths, even if no path leaf was compiled
            spec = key_spec(self.reads | {"path"} if uses_paths else self.reads)
            self.http = _http_check(decide) if spec is None else _memoised_check(decide, spec, Memo())
            self.picks = None if spec is None else spec.picks
        self.tcp: TcpCheck | None = _tcp_check(tcp[AUDIT], tcp[DENY], tcp[ALLOW], has_allow) if policies else None

    def _compile(self, action: str, for_tcp: bool) -> Entries:
        entries: list[tuple[str, Leaf]] = []
        for policy in self.policies:
            if policy.action != action:
                continue
            for index, rule in enumerate(policy.rules):
                pred = compile_rule(rule, action, for_tcp, self.reads if not for_tcp else set())
                if pred is not None:
                    entries.append((policy_id(policy.name, index), pred))
            if not for_tcp:
                self.rules += len(policy.rules)
            # no rules: Envoy's rbacPolicyMatchNever, left out here (it never matches)
        entries.sort(key=lambda e: e[0])  # Envoy's std::map order decides which policy a denial names
        return tuple(entries)


def _http_decision(audits: Entries, denies: Entries, allows: Entries, has_allow: bool,
                   uses_paths: bool) -> Callable[[RequestHead], Decision]:
    """head -> (details for the access log or "", the denying policy id or None); reads the head only."""
    def decide(head: RequestHead) -> Decision:
        ds = head.downstream
        if uses_paths:
            path, strict = readings(head.path)
        else:
            path, strict = "", None
        details = ""
        if audits:
            audited = _first(audits, ds, head, path)
            if audited is None and strict is not None:
                audited = _first(audits, ds, head, strict)
            if audited is not None:
                details = audit_detail(audited)
        policy = None
        if denies:
            policy = _first(denies, ds, head, path)
            if policy is None and strict is not None:
                policy = _first(denies, ds, head, strict)
        if policy is None and has_allow:
            if _first(allows, ds, head, path) is None or (strict is not None and _first(allows, ds, head, strict)
                                                          is None):
                policy = NONE
        if policy is not None:
            details = f"{details},{denied_detail(policy)}" if details else denied_detail(policy)
        return (details, policy) if details else ALLOWED

    return decide


def _apply(head: RequestHead, decision: Decision) -> None:
    details, policy = decision
    if details:
        head.details = details
    if policy is not None:
        raise AccessDenied(policy)


def _http_check(decide: Callable[[RequestHead], Decision]) -> Check:
    return lambda head: _apply(head, decide(head))


def _memoised_check(decide: Callable[[RequestHead], Decision], spec: KeySpec, memo: Memo) -> Check:
    """The check; its `then(target)` (proxy/inbound/pipeline.py) is the same check returning the target itself,
    the pipeline's entry when it is the only stage: one call layer less a request. Both share the one memo.
    The hit path (key, lookup, an ALLOWED decision) is one generated frame (keyed.py); the rest is `settle`."""
    def settle(head: RequestHead, key: object, decision: Decision | None) -> None:
        if decision is None:
            decision = decide(head)
            memo.put(key, decision)
        details, policy = decision
        if details:
            head.details = details
        if policy is not None:
            raise AccessDenied(policy)

    check = memoised(spec, memo.decisions, ALLOWED, settle, None)
    check.then = lambda target: memoised(spec, memo.decisions, ALLOWED, settle, target)  # type: ignore[attr-defined]
    check.memo = memo  # type: ignore[attr-defined]  # the one memo both share (tests)
    return check


def _tcp_check(audits: Entries, denies: Entries, allows: Entries, has_allow: bool) -> TcpCheck:
    def check(ds: Downstream) -> tuple[bool, str]:
        audited = _first(audits, ds, None, "") if audits else None
        details = audit_detail(audited) if audited is not None else ""
        policy = _first(denies, ds, None, "") if denies else None
        if policy is None and has_allow and _first(allows, ds, None, "") is None:
            policy = NONE
        if policy is None:
            return True, details
        return False, f"{details},{denied_detail(policy)}" if details else denied_detail(policy)

    return check

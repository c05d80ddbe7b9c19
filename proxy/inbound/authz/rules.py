"""One AuthorizationPolicy rule compiled into one predicate, in the shape istio gives Envoy
(pilot/pkg/security/authz/model/model.go New + Generate): a rule matches when one of its `from` entries
(source fields ANDed), one of its `to` entries (operation fields ANDed) and every `when` condition match; an
absent `from` / `to` / `when` matches anything; in each field the values are ORed, and `notX` / `notValues`
is Not(OR of them).

Fields Istio cannot generate for the filter chain at hand (model.go `checkError`):
- ALLOW: the whole rule is dropped ("will make all rules in the current permission ignored, effectively
  result in a smaller allow policy"): on TCP, a rule that uses any HTTP-only field never matches;
- DENY and AUDIT: only that field is dropped ("effectively resulting in a wider deny or audit policy"): on
  TCP, `DENY methods: [GET]` denies every connection the rest of its rule matches;
- an unknown `when` key drops the rule whatever the action (model.New fails: builder.go skips the rule).

    compile_rule(rule, action, for_tcp, reads) -> Leaf | None   None: the rule never matches; the attribute
                                                              names its leaves read are added to `reads`
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proto.security import ALLOW, AuthzRule
from proxy.core.downstream import Downstream
from proxy.core.request import RequestHead
from proxy.inbound.authz.leaves import HttpOnly, Leaf, Unusable, leaf


def ANY(ds: Downstream, head: RequestHead | None, path: str) -> bool:  # noqa: N802 - Envoy's `any: true`
    return True


def NEVER(ds: Downstream, head: RequestHead | None, path: str) -> bool:  # noqa: N802
    return False


def conjunction(leaves: Sequence[Leaf]) -> Leaf:
    if not leaves:
        return ANY
    if len(leaves) == 1:
        return leaves[0]
    if len(leaves) == 2:
        a, b = leaves
        return lambda ds, head, path: a(ds, head, path) and b(ds, head, path)
    frozen = tuple(leaves)

    def every(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        for one in frozen:
            if not one(ds, head, path):
                return False
        return True

    return every


def disjunction(leaves: Sequence[Leaf]) -> Leaf:
    if len(leaves) == 1:
        return leaves[0]
    frozen = tuple(leaves)

    def some(ds: Downstream, head: RequestHead | None, path: str) -> bool:
        for one in frozen:
            if one(ds, head, path):
                return True
        return False

    return some


def _negated(inner: Leaf) -> Leaf:
    return lambda ds, head, path: not inner(ds, head, path)


class _Builder:
    """Collects the ANDed leaves of one `from` / `to` entry or of the `when` list for one action and protocol."""

    def __init__(self, action: str, for_tcp: bool, reads: set[str]) -> None:
        self.action, self.for_tcp = action, for_tcp
        self.leaves: list[Leaf] = []
        self.reads = reads  # the attribute names of the leaves made (authz/memo.py keys decisions by them)

    def add(self, key: str, values: Sequence[Any] | None, not_values: Sequence[Any] | None) -> None:
        for found, negate in ((values, False), (not_values, True)):
            if not found:
                continue
            try:
                one = leaf(key, found, self.for_tcp)
            except (HttpOnly, Unusable):
                if self.action == ALLOW:
                    raise  # the rule is dropped
                continue  # DENY / AUDIT: this field is dropped, the rest of the rule stays
            self.leaves.append(_negated(one) if negate else one)
            self.reads.add(key)


def _source(b: _Builder, s: Any) -> None:
    b.add("source.principal", s.principals, s.not_principals)
    b.add("source.namespace", s.namespaces, s.not_namespaces)
    b.add("source.ip", s.ip_blocks, s.not_ip_blocks)
    b.add("remote.ip", s.remote_ip_blocks, s.not_remote_ip_blocks)
    b.add("request.auth.principal", s.request_principals, s.not_request_principals)


def _operation(b: _Builder, o: Any) -> None:
    b.add("destination.port", o.ports, o.not_ports)
    b.add(":method", o.methods, o.not_methods)
    b.add(":authority", o.hosts, o.not_hosts)
    b.add("path", o.paths, o.not_paths)


KNOWN_WHEN = ("request.headers[", "source.ip", "remote.ip", "source.namespace", "source.principal",
              "request.auth.principal", "request.auth.audiences", "request.auth.presenter", "request.auth.claims[",
              "destination.ip", "destination.port", "connection.sni")


def compile_rule(rule: AuthzRule, action: str, for_tcp: bool, reads: set[str] | None = None) -> Leaf | None:
    """The rule's predicate for `action` on an HTTP (for_tcp False) or TCP filter chain; None when it can
    never match there (dropped). The attribute names of the leaves it makes are added to `reads`."""
    if reads is None:
        reads = set()
    for cond in rule.when or ():
        if not any(cond.key == k or (k.endswith("[") and cond.key.startswith(k)) for k in KNOWN_WHEN):
            return None  # model.New: "unknown attribute": the rule is skipped
    try:
        when = _Builder(action, for_tcp, reads)
        for cond in rule.when or ():
            when.add(cond.key, cond.values, cond.not_values)
        sources: list[list[Leaf]] = []  # per `from` entry, its ANDed leaves
        for entry in rule.from_ or ():
            b = _Builder(action, for_tcp, reads)
            if entry.source is not None:
                _source(b, entry.source)
            sources.append(b.leaves)
        operations: list[list[Leaf]] = []
        for entry in rule.to or ():
            b = _Builder(action, for_tcp, reads)
            if entry.operation is not None:
                _operation(b, entry.operation)
            operations.append(b.leaves)
    except (HttpOnly, Unusable):
        return None
    # Or(from) AND Or(to) AND when: the same as istio's per-entry copies of the `when` leaves, evaluated once.
    # A lone entry's leaves join the rule's own conjunction (one call less per leaf), operations first: the
    # method and path tests are the cheapest and usually tell rules apart.
    parts: list[Leaf] = []
    for entries in (operations, sources):
        if len(entries) == 1:
            parts.extend(entries[0])
        elif entries:
            parts.append(disjunction([conjunction(e) for e in entries]))
    parts.extend(when.leaves)
    return conjunction(parts)

"""A host's routes compiled once per RouteConfig: its rules (matches, weighted destinations, the
RoutePolicy of each) and its tcp rules. Which rule a request takes: `CompiledRoute.rule_for`
(matching itself is proxy/outbound/route_match.py). A rule picks one of its destinations by weight from a
cumulative table (bisect), not per-request math.
"""

from __future__ import annotations

from bisect import bisect_right
from random import random

from proto.xds import HttpRule, RouteConfig, TcpRule, WeightedDestination
from proxy.core.request import NO_CALLER, Caller, RequestHead
from proxy.core.target import Target
from proxy.outbound import cors, mirror, redirect, rewrite
from proxy.outbound import headers as header_ops
from proxy.outbound.policy import compile_policy
from proxy.outbound.route_match import CompiledMatch


def cumulative_weights(destinations: list[WeightedDestination]) -> tuple[list[int], int]:
    """Running sums of the destinations' weights (a lone destination takes everything); raises ValueError."""
    weights = [1 if len(destinations) == 1 else d.weight for d in destinations]
    if any(w < 0 for w in weights):
        raise ValueError(f"negative destination weight in {weights}")
    cumulative: list[int] = []
    running = 0
    for weight in weights:
        running += weight
        cumulative.append(running)
    if running <= 0:
        raise ValueError("destination weights sum to 0")
    return cumulative, running


class CompiledTcpRule:
    """A VirtualService tcp route: the port and the caller are all a connection can be matched on."""

    __slots__ = ("matches", "destinations", "cumulative", "total")

    def __init__(self, rule: TcpRule) -> None:
        if not rule.destinations:
            raise ValueError("a tcp route needs at least one destination")
        self.matches = tuple(rule.matches)
        self.destinations = tuple(rule.destinations)
        self.cumulative, self.total = cumulative_weights(rule.destinations)

    def applies(self, port: int, caller: Caller) -> bool:
        if not self.matches:
            return True
        for m in self.matches:
            if ((m.port is None or m.port == port)
                    and all(caller.labels.get(k) == v for k, v in m.source_labels.items())
                    and (m.source_namespace is None or m.source_namespace == caller.namespace)):
                return True
        return False

    def pick(self) -> WeightedDestination:
        if len(self.destinations) == 1:
            return self.destinations[0]
        return self.destinations[bisect_right(self.cumulative, random() * self.total)]


class CompiledRule:
    __slots__ = ("name", "matches", "destinations", "cumulative", "total", "policy", "local", "policies")

    def __init__(self, rule: HttpRule) -> None:
        local = redirect.from_rule(rule)  # directResponse or redirect: no destinations
        if not rule.destinations and local is None:
            raise ValueError("a rule needs at least one destination")
        self.name = rule.name
        self.matches = tuple(CompiledMatch(m) for m in rule.matches)
        # timeout, retries, fault, local answer, rewrite, headers, cors, mirrors (proxy/outbound/policy.py)
        rewriter = rewrite.from_rule(rule, self.matches)
        cors_policy, mirrors = cors.from_rule(rule), mirror.from_rule(rule)
        self.policy = compile_policy(rule, local, rewriter, header_ops.edits(None, rule.headers), cors_policy,
                                     mirrors)
        # With destination-level headers, one policy per destination (the router looks it up); else None.
        self.policies = None
        if any(d.headers is not None for d in rule.destinations):
            self.policies = tuple(compile_policy(rule, None, rewriter, header_ops.edits(d.headers, rule.headers),
                                                 cors_policy, mirrors)
                                  for d in rule.destinations)
        # The Target the router returns for a rule answered by the sidecar itself (no endpoint).
        self.local = Target("", 0, "-", policy=self.policy) if local is not None else None
        if local is not None:
            self.destinations: tuple[WeightedDestination, ...] = ()
            self.cumulative: list[int] = []
            self.total = 0
            return
        self.destinations = tuple(rule.destinations)
        self.cumulative, self.total = cumulative_weights(rule.destinations)

    def applies(self, head: RequestHead, path: str, caller: Caller = NO_CALLER) -> bool:
        if not self.matches:
            return True
        for match in self.matches:
            if match.matches(head, path, caller):
                return True
        return False

    def policy_for(self, dest: WeightedDestination) -> object:
        """The RoutePolicy of a destination with its own headers (only when `policies` is set)."""
        for destination, policy in zip(self.destinations, self.policies):  # type: ignore[arg-type]
            if destination is dest:
                return policy
        return self.policy

    def pick(self) -> WeightedDestination:
        if len(self.destinations) == 1:
            return self.destinations[0]
        return self.destinations[bisect_right(self.cumulative, random() * self.total)]


class CompiledRoute:
    __slots__ = ("host", "version", "source", "rules", "tcp", "needs_path")

    def __init__(self, route: RouteConfig) -> None:
        self.host = route.host
        self.version = route.version
        self.source = route.source
        rules = []
        for i, rule in enumerate(route.rules):
            try:
                rules.append(CompiledRule(rule))
            except ValueError as exc:
                raise ValueError(f"rule {rule.name or i}: {exc}") from exc
        self.rules = tuple(rules)
        self.needs_path = any(rule.matches for rule in self.rules)  # else no rule looks at the path
        tcp = []
        for i, tcp_rule in enumerate(route.tcp):
            try:
                tcp.append(CompiledTcpRule(tcp_rule))
            except ValueError as exc:
                raise ValueError(f"tcp route {i}: {exc}") from exc
        self.tcp = tuple(tcp)

    def tcp_rule_for(self, port: int, caller: Caller = NO_CALLER) -> CompiledTcpRule | None:
        for rule in self.tcp:
            if rule.applies(port, caller):
                return rule
        return None

    def rule_for(self, head: RequestHead, path: str, caller: Caller = NO_CALLER) -> CompiledRule | None:
        for rule in self.rules:
            if rule.applies(head, path, caller):
                return rule
        return None

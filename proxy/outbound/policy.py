"""What the exchange applies to a request besides where it goes: the chosen rule's timeout, retries and fault.

Compiled once per rule when a route is compiled (route_match.CompiledRule.policy) and handed to the
exchange on the Target the router returns. Rules with nothing configured share DEFAULT_POLICY (Istio's
default retries, no timeout, no fault), as do requests to a service without a VirtualService.
"""

from __future__ import annotations

from proto.xds import HttpRule
from proxy.outbound import fault, retry


class RoutePolicy:
    __slots__ = ("timeout", "retry", "fault", "retry_from")

    def __init__(self, timeout: float | None, retry_policy: retry.RetryPolicy | None,
                 fault_policy: fault.FaultPolicy | None) -> None:
        self.timeout = timeout  # seconds for the whole response; None: no route timeout
        self.retry = retry_policy
        self.fault = fault_policy
        # Lowest response status that may be retried (1000: none), so a 200 costs one compare.
        self.retry_from = retry_policy.lowest if retry_policy is not None else 1000


DEFAULT_POLICY = RoutePolicy(None, retry.DEFAULT, None)


def compile_policy(rule: HttpRule) -> RoutePolicy:
    """Raises ValueError for a policy the proxy cannot apply."""
    if rule.timeout_ms is None and rule.retry is None and rule.fault is None:
        return DEFAULT_POLICY
    if rule.timeout_ms is not None and rule.timeout_ms < 0:
        raise ValueError(f"timeout {rule.timeout_ms}ms < 0")
    timeout = rule.timeout_ms / 1000.0 if rule.timeout_ms else None  # 0: disabled, as Envoy
    return RoutePolicy(timeout, retry.from_config(rule.retry), fault.from_config(rule.fault))

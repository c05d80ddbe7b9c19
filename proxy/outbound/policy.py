"""What the exchange applies to a request besides where it goes: the chosen rule's timeout, retries, fault,
and traffic shaping (a local answer: directResponse or redirect; a rewrite; header operations; CORS; mirroring).

Compiled once per rule when a route is compiled (route.CompiledRule.policy) and handed to the
exchange on the Target the router returns. Rules with nothing configured share DEFAULT_POLICY (Istio's
default retries, no timeout, no fault), as do requests to a service without a VirtualService.
"""

from __future__ import annotations

from proto.xds import HttpRule
from proxy.outbound import fault, retry
from proxy.outbound.cors import Cors
from proxy.outbound.headers import HeaderEdit
from proxy.outbound.mirror import MirrorPolicy
from proxy.outbound.redirect import DirectResponse, Redirect
from proxy.outbound.rewrite import Rewrite

LocalAnswer = DirectResponse | Redirect


class RoutePolicy:
    __slots__ = ("timeout", "retry", "fault", "retry_from", "shaped", "local", "rewrite", "request_headers",
                 "response_headers", "cors", "edits_response", "mirror", "plain")

    def __init__(self, timeout: float | None, retry_policy: retry.RetryPolicy | None,
                 fault_policy: fault.FaultPolicy | None, local: LocalAnswer | None = None,
                 rewrite: Rewrite | None = None, request_headers: HeaderEdit | None = None,
                 response_headers: HeaderEdit | None = None, cors: Cors | None = None,
                 mirror: MirrorPolicy | None = None) -> None:
        self.timeout = timeout  # seconds for the whole response; None: no route timeout
        self.retry = retry_policy
        self.fault = fault_policy
        # Lowest response status that may be retried (1000: none), so a 200 costs one compare.
        self.retry_from = retry_policy.lowest if retry_policy is not None else 1000
        # Traffic shaping (redirect.py, rewrite.py): `shaped` is the one check a request pays without any.
        self.local = local  # directResponse or redirect: answered by the sidecar
        self.rewrite = rewrite
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.cors = cors
        self.mirror = mirror
        self.shaped = (local is not None or rewrite is not None or request_headers is not None or cors is not None
                       or mirror is not None)
        self.edits_response = response_headers is not None or cors is not None  # checked per response head
        # Nothing to run before the request goes out but its timeout (no shaping, fault or per-try timeout):
        # the exchange's short start (Exchange.start) serves it.
        self.plain = (not self.shaped and fault_policy is None
                      and (retry_policy is None or retry_policy.per_try_timeout is None))


DEFAULT_POLICY = RoutePolicy(None, retry.DEFAULT, None)


def compile_policy(rule: HttpRule, local: LocalAnswer | None = None, rewrite: Rewrite | None = None,
                   edits: tuple[HeaderEdit | None, HeaderEdit | None] = (None, None),
                   cors: Cors | None = None, mirror: MirrorPolicy | None = None) -> RoutePolicy:
    """Raises ValueError for a policy the proxy cannot apply. `local`, `rewrite`, `edits` (request and
    response headers): compiled by the caller (route.CompiledRule), which holds the compiled matches
    a rewrite needs and the destination whose headers apply."""
    if (rule.timeout_ms is None and rule.retry is None and rule.fault is None and local is None
            and rewrite is None and edits == (None, None) and cors is None and mirror is None):
        return DEFAULT_POLICY
    if rule.timeout_ms is not None and rule.timeout_ms < 0:
        raise ValueError(f"timeout {rule.timeout_ms}ms < 0")
    timeout = rule.timeout_ms / 1000.0 if rule.timeout_ms else None  # 0: disabled, as Envoy
    return RoutePolicy(timeout, retry.from_config(rule.retry), fault.from_config(rule.fault), local, rewrite,
                       *edits, cors, mirror)

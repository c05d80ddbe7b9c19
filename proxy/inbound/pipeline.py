"""The inbound pipeline: what a request that reaches the inbound listener passes, in order.

    transport       proxy/tls/acceptor.py      TLS detection and mTLS termination (PeerAuthentication modes),
                    proxy/http/server*.py      the ClientHello's SNI; the caller (proxy/core/downstream.py
                                               Downstream: principal, addresses, SNI) once per connection
    authentication  proxy/inbound/jwt/         RequestAuthentication: 401 for a bad token, head.auth for a good one
    authorization   proxy/inbound/authz/       AuthorizationPolicy: AUDIT, DENY, ALLOW; 403 `RBAC: access denied`
                                               (TCP listeners run its TCP form once per accepted connection)
    rate limit      proxy/inbound/ratelimit.py RateLimits (isthmus.io): 429, or the target with its headers
    local app       proxy/inbound/local_app.py the app's port beside the sidecar

`build` composes the configured stages once per config push (LocalAppRouter.refresh); with none, the
listener's pick returns the local app's target and runs no stage code at all. A check raises a typed
error (proxy/core/errors.py) that the one rescue (proxy/http/rescue.py) turns into the response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from proxy.core.request import RequestHead
from proxy.core.target import Target

Check = Callable[[RequestHead], None]  # authentication, authorization: raise to refuse
Admit = Callable[[RequestHead], Target]  # the last stage before the app: the Target the request goes to


def build(checks: Sequence[Check], last: Admit | None, target: Target) -> Admit | None:
    """The pipeline's entry, or None when no stage is configured (the caller then returns `target`)."""
    if not checks:
        return last
    if len(checks) == 1 and last is None:  # one stage (an AuthorizationPolicy, the usual case): no loop, no lambda
        only = checks[0]
        then = getattr(only, "then", None)  # a check that returns the target itself (authz/engine.py)
        if then is not None:
            return then(target)  # type: ignore[no-any-return]

        def check_then_target(head: RequestHead) -> Target:
            only(head)
            return target

        return check_then_target
    final = last if last is not None else (lambda head: target)
    ordered = tuple(checks)

    def admit(head: RequestHead) -> Target:
        for check in ordered:
            check(head)
        return final(head)

    return admit

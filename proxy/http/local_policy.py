"""The local-policy stage of the outbound pipeline, run only for a rule whose RoutePolicy is `shaped`:
CORS preflight (proxy/outbound/cors.py), a local answer -- directResponse or redirect (redirect.py) --,
rewrite (rewrite.py), request header edits (headers.py), and the start of a mirror copy
(proxy/http/mirroring.py). Fault injection is the resilience controller's (proxy/http/resilience.py),
rate limiting the inbound listener's (proxy/inbound/ratelimit.py). A rule with none of them never calls
into this module (RoutePolicy.shaped is False, computed when the route is compiled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from proxy.core.request import Caller, RequestHead

if TYPE_CHECKING:
    from proxy.outbound.mirror import MirrorPolicy
    from proxy.outbound.policy import RoutePolicy

Headers = list[tuple[bytes, bytes]]


class Shaped(Protocol):
    """What the stage reads and changes on its exchange (proxy/http/exchange.Exchange)."""

    head: RequestHead | None
    target: bytes  # the request-target as it goes upstream
    headers: Headers
    is_head: bool
    raw_head: bytes | None  # the head as received; None once anything here changes it

    def closes(self) -> bool: ...
    def caller(self) -> Caller: ...
    def _answer(self, status: int, data: bytes, close: bool) -> None: ...
    def _mirror(self, policy: MirrorPolicy) -> None: ...


def shape(ex: Shaped, policy: RoutePolicy) -> bool:
    """Apply the rule's shaping (CORS preflight, local answer, rewrite, request headers); True when the
    sidecar answered the request itself."""
    head = ex.head
    assert head is not None
    if policy.cors is not None:
        close = ex.closes()
        preflight = policy.cors.answer_preflight(head, close)
        if preflight is not None:
            ex._answer(200, preflight, close)
            return True
    local = policy.local
    if local is not None:
        close = ex.closes()
        ex._answer(*local.respond(head, ex.is_head, close), close)
        return True
    rewrite = policy.rewrite
    edit = policy.request_headers
    if rewrite is not None or edit is not None:
        ex.raw_head = None  # the head changes: rebuilt from the header list
    if rewrite is not None:
        target = rewrite.target(head, ex.caller())
        if target is not None:
            ex.target = target
        ex.headers = rewrite.headers(ex.headers)
    if edit is not None:
        ex.headers = edit.apply(ex.headers)
    if policy.mirror is not None:
        ex._mirror(policy.mirror)
    return False


def edit_response(policy: RoutePolicy, head: RequestHead | None, headers: Headers) -> Headers:
    """The response headers after the rule's headers.response edits and CORS headers."""
    if policy.response_headers is not None:
        headers = policy.response_headers.apply(headers)
    if policy.cors is not None:
        assert head is not None
        headers = policy.cors.response_headers(head, headers)
    return headers

"""The mirror part of the concrete stage: the copy of a request sent to a rule's mirror destinations
(proxy/outbound/mirror.py chooses them and sends the copy, never waited on). The exchange starts one only
for a rule with mirrors; a copy whose body is still arriving is carried by MirroredExchange
(proxy/http/exchange.py), so other exchanges never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.core.request import RequestHead
from proxy.http.head import request_head
from proxy.outbound import mirror

if TYPE_CHECKING:
    from proxy.outbound.mirror import MirrorPolicy

MirrorPick = Callable[[str, str, "int | None", RequestHead], "tuple[str, int] | None"]


def pending_copy(policy: MirrorPolicy, pick: MirrorPick | None, in_flight: int, head: RequestHead,
                 method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], drop: frozenset[bytes] | None,
                 chunked: bool, pending: list[bytes]) -> mirror.PendingCopy | None:
    """The copy of the request as it goes upstream (its head, and the body bytes in `pending`), or None:
    no mirror chosen this time, none with an endpoint, MAX_IN_FLIGHT copies already being built, or a body
    too large to copy."""
    chosen = policy.chosen()
    if not chosen or pick is None or in_flight >= mirror.MAX_IN_FLIGHT:
        return None
    targets = [t for t in (pick(host, subset, port, head) for host, subset, port in chosen) if t is not None]
    if not targets:
        return None
    parts = request_head(method, target, mirror.shadow_headers(headers), drop, chunked)
    parts.insert(-1, b"connection: close\r\n")  # request_head drops hop-by-hop names
    copy = mirror.PendingCopy(targets, parts)
    if not all(copy.add(part) for part in pending):
        return None
    return copy

"""bench/dataplane/micro.py --policy: the inbound listener under the full bench's AuthorizationPolicy (ten ALLOW
rules, bench/dataplane/features.py), every timed request allowed, by the last rule only."""

from __future__ import annotations

import pytest

from bench.dataplane import micro
from bench.dataplane.features import BENCH_PATHS, DENIED_PATH
from bench.dataplane.topology import HOST_HEADER
from proxy.core.downstream import Downstream
from proxy.core.errors import AccessDenied
from proxy.core.request import RequestHead

HOST, PORT = HOST_HEADER.split(":")


def head(path: str, caller: Downstream) -> RequestHead:
    return RequestHead("GET", HOST, int(PORT), path, [(b"host", HOST_HEADER.encode())], "", caller)


def test_the_micro_request_is_allowed_by_the_last_rule_alone() -> None:
    router, caller = micro.policy_router()
    assert "/" in BENCH_PATHS and router.pick(head("/", caller)) is not None  # type: ignore[attr-defined]
    with pytest.raises(AccessDenied):  # what no rule allows
        router.pick(head(DENIED_PATH, caller))  # type: ignore[attr-defined]
    with pytest.raises(AccessDenied):  # the last rule names the caller: another one is denied
        router.pick(head("/", Downstream("cluster.local/ns/other/sa/other")))  # type: ignore[attr-defined]


class _Counting:
    """The router, counting the requests it let through (a denied one raises: 403)."""

    def __init__(self, router: object) -> None:
        self.router = router
        self.allowed = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.router, name)

    def pick(self, head: RequestHead) -> object:
        target = self.router.pick(head)  # type: ignore[attr-defined]
        self.allowed += 1
        return target


async def test_every_request_the_micro_bench_times_under_the_policy_is_allowed() -> None:
    router, caller = micro.policy_router()
    counting = _Counting(router)
    us = await micro.drive("inbound", 200, False, router=counting, downstream=caller, peer_metadata=True)
    assert us > 0
    assert counting.allowed == 1 + 1000 + 200  # the peer metadata request, the warm-up, the timed ones

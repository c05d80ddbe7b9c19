"""bench/dataplane/authz.py runs end to end with tiny counts: a figure per rule count, and the requests it
times are allowed by the last rule (so every rule is evaluated, and none is answered 403)."""

from __future__ import annotations

import re

import pytest

from bench.dataplane import authz
from proxy.core.downstream import Downstream
from proxy.core.request import RequestHead


def test_smoke_prints_a_figure_and_ratio_per_rule_count(capsys: pytest.CaptureFixture[str]) -> None:
    authz.main(["--requests", "200", "--chunks", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in lines] == list(authz.COUNTS)
    for line in lines:
        us, ratio = (float(x) for x in re.findall(r"(\d+\.\d+) us of CPU.*x(\d+\.\d+)", line)[0])
        assert us > 0 and ratio > 0, line


def test_the_timed_request_is_allowed_only_by_the_last_rule() -> None:
    router = authz.router_with(100)
    caller = Downstream(authz.PRINCIPAL, "10.0.0.7", "10.0.0.8", 8080)
    head = RequestHead("GET", "bench-backend", 9080, "/api/items/42", [(b"x-tenant", b"blue")], "", caller)
    assert router.pick(head) is router.target  # type: ignore[attr-defined]
    rules = authz.policies(100)
    assert sum(len(p.rules) for p in rules) == 100  # type: ignore[attr-defined]

"""proxy/inbound/pipeline.py: the inbound stages composed once, in order, and nothing when none is configured."""

from __future__ import annotations

import pytest

from proxy.core.errors import RateLimited
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.inbound import pipeline
from proxy.inbound.authz.engine import Authorization

APP = Target("127.0.0.1", 8080, "inbound|8080||app")


def head() -> RequestHead:
    return RequestHead("GET", "app", 80, "/", [])


def test_no_configured_stage_builds_no_pipeline():
    assert pipeline.build((), None, APP) is None


def test_a_lone_last_stage_is_the_entry_itself():
    def last(h: RequestHead) -> Target:
        return APP

    assert pipeline.build((), last, APP) is last


def test_checks_run_in_order_before_the_last_stage_and_a_refusal_stops_it():
    seen: list[str] = []

    def authn(h: RequestHead) -> None:
        seen.append("authn")

    def authz(h: RequestHead) -> None:
        seen.append("authz")
        if h.path == "/denied":
            raise RateLimited("refused")

    def last(h: RequestHead) -> Target:
        seen.append("last")
        return APP

    admit = pipeline.build((authn, authz), last, APP)
    assert admit is not None and admit(head()) is APP
    assert seen == ["authn", "authz", "last"]
    seen.clear()
    with pytest.raises(RateLimited):
        admit(RequestHead("GET", "app", 80, "/denied", []))
    assert seen == ["authn", "authz"]
    assert pipeline.build((authn,), None, APP)(head()) is APP  # type: ignore[misc]


def test_a_lone_check_without_a_last_stage_refuses_or_gives_the_app():
    def authz(h: RequestHead) -> None:
        if h.path == "/denied":
            raise RateLimited("refused")

    admit = pipeline.build([authz], None, APP)  # a list, as LocalAppRouter passes a tuple: either is read once
    assert admit is not None and admit(head()) is APP
    with pytest.raises(RateLimited):
        admit(RequestHead("GET", "app", 80, "/denied", []))


def test_a_lone_memoised_authorization_is_the_entry_itself_and_shares_the_checks_memo():
    from proxy.core.errors import AccessDenied
    from tests.proxy.authz.helpers import policy, request

    authz = Authorization([policy("foo/a", "ALLOW", {"to": [{"operation": {"paths": ["/ok"]}}]})]).http
    assert authz is not None
    entry = pipeline.build((authz,), None, APP)
    assert entry is not None and entry.__qualname__ != "build.<locals>.check_then_target"  # no layer between
    assert entry(request("/ok")) is APP
    assert authz(request("/ok")) is None
    with pytest.raises(AccessDenied):
        entry(request("/no"))
    assert len(authz.memo.decisions) == 2  # one memo: what the entry decided the check finds

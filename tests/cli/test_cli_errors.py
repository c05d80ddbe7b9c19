"""How the CLI reports what pilot said: the generic error's reason, resources not in effect, proxy status."""

from __future__ import annotations

from proto.config_api import ApplyReply, ConfigError
from proto.xds import ProxyStatus, ProxyStatusReply
from isthmus.cli import not_reconciled, print_apply_reply
from isthmus.proxy_status import rejections, status_rows, sync_state


def printed(reply: ApplyReply) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = print_apply_reply(reply, echo=lambda text, err=False: lines.append(text))
    return ok, lines


def test_the_generic_error_reply_is_printed_with_its_reason() -> None:
    ok, lines = printed(ApplyReply(ok=False, error="internal error on isthmus.config.apply: KeyError: 'x'"))
    assert not ok and lines == ["error: internal error on isthmus.config.apply: KeyError: 'x'"]
    assert not any("no reason given" in line for line in lines)


def test_document_errors_are_printed_without_an_extra_line() -> None:
    ok, lines = printed(ApplyReply(ok=False, errors=[ConfigError(document=1, path="spec", message="bad")]))
    assert not ok and lines == ["error: document 1: spec: bad"]


def test_a_reply_without_any_reason_still_says_pilot_refused() -> None:
    assert printed(ApplyReply(ok=False))[1] == ["error: pilot refused the request without saying why"]


def test_resources_whose_reconciled_condition_is_false_are_named_with_the_reason() -> None:
    resources = [
        {"kind": "VirtualService", "metadata": {"name": "ok", "namespace": "a"}},
        {"kind": "VirtualService", "metadata": {"name": "bad", "namespace": "a"},
         "status": {"conditions": [{"type": "Reconciled", "status": "False", "message": "why"}]}},
    ]
    assert not_reconciled(resources) == [
        "virtualservice.networking.istio.io/bad (a) is stored but not in effect: why"]


def test_proxy_status_is_synced_stale_or_rejected_against_the_pushed_version() -> None:
    reply = ProxyStatusReply(ok=True, version=10, proxies=[
        ProxyStatus(proxy_id="p1", service="s", namespace="n", version=10, updated_at=100.0),
        ProxyStatus(proxy_id="p2", service="s", namespace="n", version=9, updated_at=100.0),
        ProxyStatus(proxy_id="p3", service="s", namespace="n", version=10, ok=False, error="bad pool",
                    updated_at=100.0)])
    assert [sync_state(p, reply.version) for p in reply.proxies] == ["SYNCED", "STALE", "REJECTED"]
    assert status_rows(reply, now=105.0)[0] == ["p1", "n", "s", "SYNCED", "10", "5s ago"]
    assert rejections(reply) == ["p3 rejected version 10: bad pool"]


def test_an_error_about_the_whole_submission_has_no_document_number() -> None:
    from isthmus.output import format_config_error

    whole = ConfigError(document=0, message="the submission is larger than 3145728 bytes")
    assert format_config_error(whole) == "the submission: the submission is larger than 3145728 bytes"
    one = ConfigError(document=2, kind="VirtualService", name="r", path="spec.hosts", message="bad")
    assert format_config_error(one) == "document 2 (VirtualService default/r): spec.hosts: bad"


def test_every_health_reply_carries_leader_even_when_false() -> None:
    import json

    from proto.health import HealthReply
    from runtime.bus import encode

    assert json.loads(encode(HealthReply(service="ca", instance="i", ready=True))) == {
        "service": "ca", "instance": "i", "ready": True, "leader": False, "detail": "", "version": ""}

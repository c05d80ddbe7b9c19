"""proxy/outbound/redirect.py: directResponse and redirect answered by the sidecar."""

from __future__ import annotations

import pytest

from proto import xds
from proxy.outbound.redirect import DirectResponse, Redirect, from_rule
from proxy.core.request import RequestHead


def head(path: str = "/a/b?x=1", host: bytes = b"reviews:9080", port: int = 9080) -> RequestHead:
    return RequestHead("GET", host.split(b":")[0].decode(), port, path, [(b"host", host)])


def test_a_direct_response_carries_status_body_and_content_type():
    status, data = DirectResponse(xds.DirectResponse(status=418, body=b"teapot")).respond(head(), False, False)
    assert status == 418
    assert data == (b"HTTP/1.1 418 I'm a Teapot\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nteapot")


def test_a_direct_response_to_head_or_closing_has_no_body_or_says_close():
    answer = DirectResponse(xds.DirectResponse(status=204))
    assert answer.respond(head(), False, True)[1] == b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    assert DirectResponse(xds.DirectResponse(status=200, body=b"x")).respond(head(), True, False)[1].endswith(b"\r\n\r\n")


@pytest.mark.parametrize("config, location", [
    (xds.Redirect(uri="/new"), "http://reviews:9080/new?x=1"),  # query kept
    (xds.Redirect(uri="/new?y=2"), "http://reviews:9080/new?y=2"),  # the uri's own query replaces it
    (xds.Redirect(authority="ratings"), "http://ratings/a/b?x=1"),  # authority taken whole
    (xds.Redirect(authority="ratings:8000", uri="/"), "http://ratings:8000/?x=1"),
    (xds.Redirect(port=8443), "http://reviews:8443/a/b?x=1"),
    (xds.Redirect(scheme="https", port=443), "https://reviews/a/b?x=1"),  # default port not written
    (xds.Redirect(scheme="https", derive_port="FROM_PROTOCOL_DEFAULT"), "https://reviews/a/b?x=1"),
    (xds.Redirect(authority="other", derive_port="FROM_REQUEST_PORT"), "http://other:9080/a/b?x=1"),
])
def test_redirect_locations_follow_envoys_rules(config, location):
    answer = Redirect(config)
    assert answer.location(head()) == location
    status, data = answer.respond(head(), False, False)
    assert status == 301 and f"location: {location}\r\n".encode() in data and data.endswith(b"content-length: 0\r\n\r\n")


def test_a_scheme_change_drops_the_old_default_port_and_keeps_others():
    assert Redirect(xds.Redirect(scheme="https")).location(head(host=b"web:80", port=80)) == "https://web/a/b?x=1"
    assert Redirect(xds.Redirect(scheme="https")).location(head(host=b"web")) == "https://web/a/b?x=1"
    assert Redirect(xds.Redirect(scheme="https")).location(head()) == "https://reviews:9080/a/b?x=1"


def test_redirect_codes_other_than_envoys_five_are_refused_by_the_proxy():
    assert Redirect(xds.Redirect(uri="/", code=307)).status == 307
    with pytest.raises(ValueError):
        Redirect(xds.Redirect(uri="/", code=300))
    with pytest.raises(ValueError):
        DirectResponse(xds.DirectResponse(status=600))


def test_rules_without_a_local_answer_compile_to_none():
    assert from_rule(xds.HttpRule(destinations=[xds.WeightedDestination(host="h")])) is None
    assert isinstance(from_rule(xds.HttpRule(redirect=xds.Redirect(uri="/x"))), Redirect)

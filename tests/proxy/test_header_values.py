"""Header values as the stages read them: llhttp keeps trailing whitespace, which RFC 9112 5 (and the app,
and Envoy) do not count as part of the value; the readers trim it, so parsing pays nothing per header."""

from __future__ import annotations

from proto.security import JwtRule
from proxy.core.request import RequestHead, header_value
from proxy.inbound.jwt.locations import Locations, cookies


def _head(*headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead("GET", "app", 80, "/", list(headers))


def test_header_and_header_value_trim_trailing_whitespace():
    head = _head((b"x-evil", b"yes \t"), (b"x-evil", b"no "))
    assert head.header(b"x-evil") == b"yes"
    assert header_value(head, b"x-evil") == "yes,no"
    assert head.header(b"x-none") is None and header_value(head, b"x-none") is None


def test_a_bearer_token_with_trailing_whitespace_is_the_token():
    head = _head((b"authorization", b"Bearer aaa.bbb.ccc  "))
    found = Locations.of(JwtRule(issuer="i")).extract(head, head.headers)
    assert [token for token, _, _ in found] == [b"aaa.bbb.ccc"]


def test_a_cookie_with_trailing_whitespace_is_its_value():
    assert cookies([(b"cookie", b"a=1; session=tok \t")], frozenset({"session"})) == {"session": b"tok"}

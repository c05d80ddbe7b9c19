"""Header values as the stages read them. Trailing whitespace is stripped as heads are parsed (over loopback:
tests/proxy/test_header_ows.py); inside a value, the readers' own syntax still allows whitespace."""

from __future__ import annotations

from proxy.inbound.jwt.locations import cookies


def test_a_cookie_with_trailing_whitespace_is_its_value():
    assert cookies([(b"cookie", b"a=1; session=tok \t")], frozenset({"session"})) == {"session": b"tok"}

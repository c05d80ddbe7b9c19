"""proxy/inbound/jwt/outputs.py and cache.py: what a verified token hands on, and the bounded cache of them."""

from __future__ import annotations

import pytest

from proxy.inbound.jwt.cache import CACHE_MAX_TOKEN_BYTES, CACHE_SIZE, TokenCache
from proxy.inbound.jwt.outputs import claim_header, request_auth
from proxy.inbound.jwt.token import parse
from tests.proxy.jwt.issuers import ISSUER, claims, sign


def test_request_auth_is_iss_slash_sub_with_audiences_as_a_list_presenter_and_nested_claims():
    auth = request_auth(parse(sign(claims(aud="svc", azp="web", groups={"admin": {"level": 3}})).encode()))
    assert auth.principal == f"{ISSUER}/alice" and auth.audiences == ["svc"] and auth.presenter == "web"
    assert auth.claims["groups"]["admin"]["level"] == 3
    bare = request_auth(parse(sign(claims(sub=None, azp=5)).encode()))
    assert bare.principal == f"{ISSUER}/" and bare.audiences == [] and bare.presenter == ""


def test_scope_and_permission_become_lists_of_words_as_istio_normalizes_them():
    auth = request_auth(parse(sign(claims(scope="read  write", permission="p", other="a b")).encode()))
    assert auth.claims["scope"] == ["read", "write"] and auth.claims["permission"] == ["p"]
    assert auth.claims["other"] == "a b"  # only Istio's two space-delimited claims
    listed = request_auth(parse(sign(claims(scope=["x y"])).encode()))
    assert listed.claims["scope"] == ["x y"]


@pytest.mark.parametrize("value, header", [
    ("text", b"text"), (7, b"7"), (7.0, b"7"), (7.5, b"7.500000"), (-1, b"-1.000000"), (True, b"true"),
    (False, b"false"), ("", None), ([1], None), ({"a": 1}, None), (None, None), ("a\r\nx-evil: 1", None),
    ("caf\u00e9", "caf\u00e9".encode()),
])
def test_claim_values_become_header_values_as_envoy_prints_them(value, header):
    assert claim_header({"c": value}, "c") == header


def test_a_dotted_claim_walks_nested_objects():
    payload = {"a": {"b": {"c": "deep"}}, "x": "flat", "a.b": "literal"}
    assert claim_header(payload, "a.b.c") == b"deep"
    assert claim_header(payload, "x.y") is None and claim_header(payload, "missing") is None
    assert claim_header(payload, "a.b") is None  # an object is no header value


def test_the_cache_keeps_the_most_recently_used_tokens_up_to_its_size():
    cache: TokenCache[int] = TokenCache()
    assert cache.size == CACHE_SIZE == 100
    for n in range(CACHE_SIZE):
        cache.put(b"t%d" % n, 0, n)
    assert cache.get(b"t0", 1) == 0  # t0 is now the most recent
    cache.put(b"new", 0, -1)
    assert len(cache) == CACHE_SIZE and cache.get(b"t1", 1) is None and cache.get(b"t0", 1) == 0


def test_the_cache_drops_an_entry_once_expired_and_keeps_no_token_longer_than_its_bound():
    cache: TokenCache[str] = TokenCache()
    cache.put(b"tok", 100, "v")
    assert cache.get(b"tok", 100) == "v" and cache.get(b"tok", 101) is None and len(cache) == 0
    at, over = b"x" * CACHE_MAX_TOKEN_BYTES, b"x" * (CACHE_MAX_TOKEN_BYTES + 1)
    cache.put(at, 0, "at")
    cache.put(over, 0, "over")
    assert cache.get(at, 1) == "at" and cache.get(over, 1) is None

"""proxy/inbound/jwt/locations.py: tokens read from Envoy's places in Envoy's order, and removed as Envoy does."""

from __future__ import annotations

from proxy.core.request import RequestHead
from proxy.inbound.jwt.locations import COOKIE, HEADER, PARAM, Locations, header_token, remove
from tests.proxy.jwt.issuers import rule


def extract(locations: Locations, head: RequestHead) -> list[tuple[bytes, int, object]]:
    return locations.extract(head, list(head.headers))


def req(path: str = "/", *headers: tuple[bytes, bytes]) -> RequestHead:
    return RequestHead("GET", "app", 80, path, [(b"host", b"app"), *headers])


def test_without_locations_the_default_is_authorization_bearer_and_the_access_token_parameter():
    loc = Locations.of(rule())
    assert extract(loc, req("/x?a=1&access_token=p.q.r", (b"authorization", b"Bearer h.e.d"))) == [
        (b"h.e.d", HEADER, b"authorization"), (b"p.q.r", PARAM, "access_token")]
    assert extract(loc, req("/x", (b"authorization", b"Basic dXNlcg=="))) == []  # no Bearer prefix: no token
    assert extract(loc, req("/x", (b"authorization", b"bearer h.e.d"))) == []  # the prefix is case-sensitive


def test_a_prefix_is_found_anywhere_in_the_value_and_the_token_starts_at_the_next_base64url_character():
    assert header_token(b"Bearer   a.b.c", b"Bearer ") == b"a.b.c"
    assert header_token(b"Basic x, Bearer a.b.c", b"Bearer ") == b"a.b.c"
    assert header_token(b"Bearer ", b"Bearer ") == b"Bearer "  # nothing after it: the whole value (fails to parse)
    assert header_token(b"a.b.c", b"") == b"a.b.c"
    assert header_token(b"Token a.b.c", b"Bearer ") is None


def test_from_headers_reads_every_value_of_each_header_with_its_prefix_and_none_of_the_defaults():
    loc = Locations.of(rule(from_headers=[("X-Jwt", None), ("X-Auth", "Tok ")]))
    head = req("/?access_token=ignored", (b"x-jwt", b"one.a.b"), (b"authorization", b"Bearer d.e.f"),
               (b"x-auth", b"Tok two.a.b"), (b"x-jwt", b"three.a.b"), (b"x-auth", b"no prefix"))
    # header locations sorted by name + prefix (x-auth before x-jwt), values in request order
    assert extract(loc, head) == [(b"two.a.b", HEADER, b"x-auth"), (b"one.a.b", HEADER, b"x-jwt"),
                                  (b"three.a.b", HEADER, b"x-jwt")]


def test_from_params_takes_the_first_value_percent_decoded():
    loc = Locations.of(rule(from_params=["token", "jwt"]))
    assert extract(loc, req("/p?token=a%2Eb.c&token=second&jwt=x.y.z")) == [
        (b"x.y.z", PARAM, "jwt"), (b"a.b.c", PARAM, "token")]
    assert extract(loc, req("/p")) == [] and extract(loc, req("/p?other=1")) == []


def test_from_cookies_takes_the_first_value_across_cookie_headers_without_quotes():
    loc = Locations.of(rule(from_cookies=["session"]))
    head = req("/", (b"cookie", b"a=1; session=\"c.o.k\""), (b"cookie", b"session=later"))
    assert extract(loc, head) == [(b"c.o.k", COOKIE, "session")]
    assert extract(loc, req("/", (b"cookie", b"sessionx=1"))) == []


def test_removal_drops_the_whole_header_or_just_the_parameter_and_keeps_cookies():
    head = req("/p?a=%20x&access_token=t.o.k&b=2&access_token=again", (b"authorization", b"Bearer t"),
               (b"authorization", b"Bearer u"), (b"cookie", b"session=c"))
    remove(head, HEADER, b"authorization")
    assert [n for n, _ in head.headers] == [b"host", b"cookie"] and head.edited
    remove(head, PARAM, "access_token")
    assert head.path == "/p?a=%20x&b=2"  # the rest of the query kept byte for byte
    remove(head, COOKIE, "session")
    assert (b"cookie", b"session=c") in head.headers  # Envoy's JwtCookieLocation::removeJwt does nothing
    only = req("/p?access_token=t")
    remove(only, PARAM, "access_token")
    assert only.path == "/p"

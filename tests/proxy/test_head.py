"""Request-head rules without sockets: authority parsing, the two modes, hop-by-hop, request ids."""

from __future__ import annotations

import pytest

from proxy.core.errors import BadRequest
from proxy.http.head import (
    Mode, connection_tokens, new_request_id, request_head, resolve, split_authority, write_response_head,
)


@pytest.mark.parametrize(("authority", "expected"), [
    (b"reviews", ("reviews", 80)),
    (b"reviews:9080", ("reviews", 9080)),
    (b"[::1]:8080", ("::1", 8080)),
    (b"[fe80::1]", ("fe80::1", 80)),
    (b"my_host.example.com", ("my_host.example.com", 80)),
    (b"[fe80::1%25eth0]:80", ("fe80::1%25eth0", 80)),
])
def test_split_authority_reads_host_and_port_with_80_by_default(authority, expected):
    assert split_authority(authority) == expected


@pytest.mark.parametrize("authority", [b"", b":80", b"reviews:http", b"reviews:70000", b"[::1", b"[::1]x"])
def test_split_authority_rejects_what_is_not_a_host(authority):
    with pytest.raises(BadRequest):
        split_authority(authority)


@pytest.mark.parametrize("authority", [
    b"evil.com/.example.com", b"evil.com#.example.com", b"evil.com?.example.com", b"evil.com\\.example.com",
    b"evil.com .example.com", b"a.example.com\x00", b"a\tb.example.com", b"<script>.example.com", b"[::1/x]:80",
])
def test_split_authority_rejects_bytes_no_host_has(authority):
    """Envoy answers 400 (authorityIsValid); a `*.example.com` virtual host must never see `evil.com/.example.com`,
    which httpsRedirect would send to https://evil.com/ (an open redirect)."""
    with pytest.raises(BadRequest, match="invalid host"):
        split_authority(authority)


def test_outbound_absolute_form_wins_over_the_host_header_and_becomes_origin_form():
    assert resolve(Mode.OUTBOUND, b"http://reviews:9080/a?b=1", b"other") == ("reviews", 9080, b"/a?b=1",
                                                                              b"reviews:9080")
    assert resolve(Mode.OUTBOUND, b"http://reviews", None) == ("reviews", 80, b"/", b"reviews")


def test_origin_form_without_a_host_header_is_a_bad_request():
    with pytest.raises(BadRequest, match="missing Host"):
        resolve(Mode.OUTBOUND, b"/x", None)


def test_inbound_absolute_form_reaches_the_app_in_origin_form():
    assert resolve(Mode.INBOUND, b"http://app:8080/y", b"app:8080") == ("app", 8080, b"/y", None)
    assert resolve(Mode.INBOUND, b"http://APP/y?q=1", b"app") == ("app", 80, b"/y?q=1", None)
    assert resolve(Mode.INBOUND, b"http://app", b"app") == ("app", 80, b"/", None)
    assert resolve(Mode.INBOUND, b"/y", b"app") == ("app", 80, b"/y", None)


@pytest.mark.parametrize("mode, url, host", [
    (Mode.OUTBOUND, b"/", b"evil@reviews:9080"), (Mode.INBOUND, b"/", b"evil@app"),
    (Mode.OUTBOUND, b"http://evil@reviews:9080/", b"reviews"), (Mode.INBOUND, b"http://u@app/", b"app"),
])
def test_userinfo_in_host_or_target_is_a_bad_request(mode, url: bytes, host: bytes):
    with pytest.raises(BadRequest, match="invalid"):
        resolve(mode, url, host)


@pytest.mark.parametrize("url, host", [(b"http://x/y", b"app:8080"), (b"http://app:9090/y", b"app:8080"),
                                       (b"http://app/y", b"app:8080")])
def test_inbound_absolute_form_naming_another_host_than_host_is_a_bad_request(url: bytes, host: bytes):
    with pytest.raises(BadRequest, match="differs from the Host header"):
        resolve(Mode.INBOUND, url, host)


def test_connection_header_tokens_beyond_the_standard_options_are_hop_by_hop():
    assert connection_tokens(b"keep-alive, Close") is None
    assert connection_tokens(b"close, X-Foo ,x-bar") == {b"x-foo", b"x-bar"}


def test_request_head_drops_hop_by_hop_and_expect_and_marks_re_chunked_bodies():
    head = b"".join(request_head(b"POST", b"/p", [
        (b"host", b"a"), (b"connection", b"x-foo"), (b"x-foo", b"1"), (b"expect", b"100-continue"),
        (b"transfer-encoding", b"chunked"), (b"te", b"trailers"), (b"x-keep", b"2"),
    ], frozenset({b"x-foo"}), chunked=True))
    assert head == b"POST /p HTTP/1.1\r\nhost: a\r\nx-keep: 2\r\ntransfer-encoding: chunked\r\n\r\n"


def test_response_head_adds_framing_and_close_when_asked():
    out: list[bytes] = []
    write_response_head(out, 200, b"OK", [(b"keep-alive", b"5"), (b"x-a", b"1")], None, True, True)
    assert b"".join(out) == b"HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"


def test_request_ids_are_unique_and_uuid_shaped():
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all([len(part) for part in i.split(b"-")] == [8, 4, 4, 4, 12] for i in ids)


def test_request_ids_made_in_batches_are_the_prefix_and_a_counter_from_one():
    # the ids are made 256 at a time: the same bytes, in the same order, as one `%012x` per request,
    # across batch boundaries, after a reseed (a forked worker), and where the counter outgrows 12 digits
    from proxy.http import head as head_module
    head_module._reseed()
    prefix = head_module._prefix
    assert [new_request_id() for _ in range(1000)] == [b"%s%012x" % (prefix, n) for n in range(1, 1001)]
    head_module._reseed()
    assert head_module._prefix != prefix and new_request_id() == head_module._prefix + b"000000000001"
    head_module.request_ids = head_module._ids_from((1 << 40) - 1)
    prefix = head_module._prefix
    assert [new_request_id() for _ in range(257)] == [b"%s%012x" % (prefix, n)
                                                      for n in range((1 << 48) - 256, (1 << 48) + 1)]
    assert new_request_id() == b"%s%012x" % (prefix, (1 << 48) + 1)
    head_module._reseed()  # a fresh prefix from 1 for whatever runs next


@pytest.mark.parametrize("value", [b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade",
                                   b"KEEP-ALIVE", b"keep-alive, upgrade"])
def test_plain_connection_values_name_no_header_whichever_path_reads_them(value):
    assert connection_tokens(value) is None
    assert connection_tokens(value + b", x-hop") == {b"x-hop"}


def test_the_host_cache_answers_as_the_parser_and_is_bounded(monkeypatch):
    from proxy.http import head as head_module
    monkeypatch.setattr(head_module, "_AUTHORITIES", {})
    monkeypatch.setattr(head_module, "AUTHORITY_CACHE_SIZE", 2)
    for _ in range(2):  # parsed, then from the cache
        assert resolve(Mode.OUTBOUND, b"/", b"reviews:9080") == ("reviews", 9080, b"/", None)
        assert resolve(Mode.INBOUND, b"http://app:8080/y", b"app:8080") == ("app", 8080, b"/y", None)  # origin-form to the app
        with pytest.raises(BadRequest):  # a bad value is never cached
            resolve(Mode.OUTBOUND, b"/", b"reviews:http")
        with pytest.raises(BadRequest, match="differs from the Host header"):  # checked with a cached Host too
            resolve(Mode.INBOUND, b"http://x/y", b"app:8080")
    resolve(Mode.OUTBOUND, b"/", b"ratings")
    resolve(Mode.OUTBOUND, b"/", b"x" * (head_module.AUTHORITY_CACHE_KEY_MAX + 1))  # too long to keep
    assert len(head_module._AUTHORITIES) <= 2 and b"reviews:http" not in head_module._AUTHORITIES
    assert all(len(key) <= head_module.AUTHORITY_CACHE_KEY_MAX for key in head_module._AUTHORITIES)


def test_the_listeners_inline_host_lookup_reads_the_cache_resolve_fills():
    # server.py looks a Host up with cached_authority before calling resolve(): both must see one dict.
    from proxy.http.head import cached_authority
    host = b"inline-cache-check:8123"
    assert resolve(Mode.INBOUND, b"/", host) == ("inline-cache-check", 8123, b"/", None)
    assert cached_authority(host) == ("inline-cache-check", 8123)


async def test_the_listener_sets_every_slot_of_its_heads_as_request_head_init_does(start_proxy, connect):
    # proxy/http/server.py writes RequestHead.__init__'s stores inline: a slot added to RequestHead and not there
    # would be unset (AttributeError on first read), a default written otherwise would differ from __init__'s
    from tests.proxy.http_helpers import StubRouter, read_response

    from proxy.core.request import RequestHead

    router = StubRouter({})
    listener = await start_proxy(router)
    reader, writer = await connect(listener.port)
    writer.write(b"GET /p?q=1 HTTP/1.1\r\nHost: app.test:8080\r\nX-A: b\r\n\r\n")
    assert (await read_response(reader)).status == 404
    made = router.heads[0]
    init = RequestHead(made.method, made.host, made.port, made.path, made.headers, made.client, made.downstream)
    assert (made.method, made.host, made.port, made.path, made.client) == ("GET", "app.test", 8080, "/p?q=1", "127.0.0.1")
    for name in RequestHead.__slots__:
        if name != "trace":  # the tracing stage's, when the listener has one (none here: None either way)
            assert getattr(made, name) == getattr(init, name), name
    assert made.trace is None

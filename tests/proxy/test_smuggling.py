"""Every request-smuggling and framing probe, on both listeners: the sidecar itself answers 400 and closes,
and not one byte reaches the app. The table pins what httptools' strict defaults give us today, so a parser
change or a leniency switched on cannot silently reopen one of them."""

from __future__ import annotations

import asyncio

import pytest
from tests.proxy.http_helpers import RecordingApp, StubRouter, closed, read_response

from proxy.http.head import Mode

pytestmark = pytest.mark.timeout(30)

H = b"Host: app.test:8080\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
OUT, IN = (Mode.OUTBOUND,), (Mode.INBOUND,)
BOTH = (Mode.OUTBOUND, Mode.INBOUND)

# (name, bytes sent, listeners, status)
PROBES = [
    ("content-length-with-transfer-encoding",
     POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BOTH, 400),
    ("transfer-encoding-with-content-length",
     POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", BOTH, 400),
    ("two-different-content-lengths", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", BOTH, 400),
    ("two-equal-content-lengths", POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", BOTH, 400),
    ("content-length-list", POST + b"Content-Length: 3, 3\r\n\r\nabc", BOTH, 400),
    ("negative-content-length", POST + b"Content-Length: -1\r\n\r\n", BOTH, 400),
    ("huge-content-length", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", BOTH, 400),
    ("plus-content-length", POST + b"Content-Length: +3\r\n\r\nabc", BOTH, 400),
    ("chunk-size-not-hex", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", BOTH, 400),
    ("chunk-size-overflow", POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n", BOTH, 400),
    ("chunk-size-with-space", POST + b"Transfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n", BOTH, 400),
    ("chunk-without-crlf", POST + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n", BOTH, 400),
    ("transfer-encoding-not-chunked-last", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", BOTH, 400),
    ("transfer-encoding-gzip-only", POST + b"Transfer-Encoding: gzip\r\n\r\nabc", BOTH, 501),  # Envoy: 501
    ("transfer-encoding-gzip-then-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     BOTH, 501),  # the gzip coding would be dropped silently
    ("two-transfer-encodings", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     BOTH, 400),
    ("transfer-encoding-in-http10",
     b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BOTH, 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", BOTH, 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", BOTH, 400),
    ("space-in-header-name", b"GET / HTTP/1.1\r\n" + H + b"X A: a\r\n\r\n", BOTH, 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"Content-Length : 3\r\n\r\nabc", BOTH, 400),
    ("header-without-colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\r\n\r\n", BOTH, 400),
    ("non-token-header-name", b"GET / HTTP/1.1\r\n" + H + b"X(A): a\r\n\r\n", BOTH, 400),
    ("nul-in-header-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", BOTH, 400),
    ("cr-in-header-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", BOTH, 400),
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: app.test:8080\n\n", BOTH, 400),
    ("bare-lf-after-header", b"GET / HTTP/1.1\r\nHost: app.test:8080\nX-A: b\r\n\r\n", BOTH, 400),
    ("bare-cr", b"GET / HTTP/1.1\rHost: app.test:8080\r\r\n", BOTH, 400),
    ("control-char-in-url", b"GET /\x7f HTTP/1.1\r\n" + H + b"\r\n", BOTH, 400),
    ("http2-version", b"GET / HTTP/2.0\r\n" + H + b"\r\n", BOTH, 400),
    ("unknown-version", b"GET / HTTP/3.1\r\n" + H + b"\r\n", BOTH, 400),
    ("http09", b"GET /\r\n\r\n", BOTH, 400),
    ("h2c-upgrade", b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
     b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", BOTH, 400),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", BOTH, 400),
    ("websocket-upgrade-on-post", POST + b"Connection: upgrade\r\nUpgrade: websocket\r\n\r\n", BOTH, 400),
    ("two-hosts", b"GET / HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", BOTH, 400),
    ("connect-inbound", b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", IN, 400),
    ("absolute-form-to-another-host-inbound", b"GET http://other.test/ HTTP/1.1\r\n" + H + b"\r\n", IN, 400),
]

CASES = [pytest.param(data, mode, status, id=f"{name}-{mode.value}")
         for name, data, modes, status in PROBES for mode in modes]


@pytest.mark.parametrize("data, mode, status", CASES)
async def test_a_smuggling_probe_is_answered_by_the_sidecar_and_reaches_no_app(start_proxy, connect, data, mode,
                                                                               status):
    app = RecordingApp()
    async with app:
        router = StubRouter({"app.test": app.target, "other.test": app.target})
        proxy = await start_proxy(router, mode)
        reader, writer = await connect(proxy.port)
        writer.write(data)
        resp = await read_response(reader)
        assert resp.status == status
        assert resp.header(b"connection") == b"close"
        assert await closed(reader)
    assert bytes(app.received) == b""


@pytest.mark.parametrize("mode", [Mode.OUTBOUND, Mode.INBOUND], ids=["outbound", "inbound"])
async def test_the_harness_sees_a_well_formed_request_reach_the_app(start_proxy, connect, mode):
    """The control: the same client, listener and recording app do carry a valid request through."""
    app = RecordingApp()
    async with app:
        proxy = await start_proxy(StubRouter({"app.test": app.target}), mode)
        reader, writer = await connect(proxy.port)
        writer.write(POST + b"Content-Length: 3\r\n\r\nabc")
        for _ in range(200):
            if app.received.endswith(b"abc"):
                break
            await asyncio.sleep(0.01)
    assert app.received.startswith(b"POST / HTTP/1.1\r\n") and app.received.endswith(b"\r\n\r\nabc")

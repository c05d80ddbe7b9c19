"""proxy/outbound/cors.py: preflights answered by the sidecar, CORS headers on actual responses."""

from __future__ import annotations

from proto import xds
from proxy.outbound.cors import Cors
from proxy.core.request import RequestHead

POLICY = xds.CorsPolicy(allow_origins=[xds.StringMatch(exact="https://a.example"),
                                       xds.StringMatch(prefix="https://dev.")],
                        allow_methods=["GET", "POST"], allow_headers=["x-custom"], expose_headers=["x-exposed"],
                        max_age_s=600, allow_credentials=True)


def head(method: str = "OPTIONS", origin: str | None = "https://a.example", request_method: str | None = "POST"):
    headers = [(b"host", b"reviews")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if request_method is not None:
        headers.append((b"access-control-request-method", request_method.encode()))
    return RequestHead(method, "reviews", 80, "/", headers)


def test_a_preflight_from_an_allowed_origin_is_answered_with_the_policy():
    data = Cors(POLICY).answer_preflight(head(), False)
    assert data == (b"HTTP/1.1 200 OK\r\naccess-control-allow-origin: https://a.example\r\n"
                    b"access-control-allow-credentials: true\r\naccess-control-allow-methods: GET,POST\r\n"
                    b"access-control-allow-headers: x-custom\r\naccess-control-max-age: 600\r\n"
                    b"content-length: 0\r\n\r\n")


def test_what_is_not_a_preflight_of_an_allowed_origin_goes_upstream():
    cors = Cors(POLICY)
    assert cors.answer_preflight(head(origin="https://evil.example"), False) is None
    assert cors.answer_preflight(head(request_method=None), False) is None
    assert cors.answer_preflight(head(method="GET"), False) is None
    assert cors.answer_preflight(head(origin="https://dev.x"), True).endswith(b"connection: close\r\n\r\n")


def test_actual_responses_get_origin_credentials_and_exposed_headers_only_for_allowed_origins():
    cors = Cors(POLICY)
    upstream = [(b"content-type", b"text/plain"), (b"access-control-allow-origin", b"*")]
    assert cors.response_headers(head("GET"), upstream) == [
        (b"content-type", b"text/plain"), (b"access-control-allow-origin", b"https://a.example"),
        (b"access-control-allow-credentials", b"true"), (b"access-control-expose-headers", b"x-exposed")]
    assert cors.response_headers(head("GET", origin="https://evil.example"), upstream) is upstream
    assert cors.response_headers(head("GET", origin=None), upstream) is upstream


def test_an_exact_star_origin_allows_every_origin_as_envoy_does():
    cors = Cors(xds.CorsPolicy(allow_origins=[xds.StringMatch(exact="*")]))
    assert cors.origin(head(origin="https://any.example")) == b"https://any.example"
    assert cors.answer_preflight(head(origin="https://any.example"), False).count(b"access-control") == 1

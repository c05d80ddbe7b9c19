"""rescue: every failure becomes one complete plain-text response, flag kept for the access log."""

from __future__ import annotations

from proxy.core.errors import BadRequest, NoCluster, NoHealthyUpstream, NoRoute, UpstreamConnectError, UpstreamTimeout
from proxy.http.rescue import rescue


def test_no_route_becomes_404_with_the_detail_as_body():
    status, flag, payload = rescue(NoRoute('no route for host "foo:80"'), close=False)
    assert (status, flag) == (404, "NR")
    assert payload == (b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 27\r\n\r\n"
                       b'no route for host "foo:80"\n')


def test_typed_errors_map_to_their_status_and_flag():
    assert rescue(NoHealthyUpstream("x"), False)[:2] == (503, "UH")
    assert rescue(NoCluster("x"), False)[:2] == (503, "NC")  # Envoy's cluster_not_found_response_code
    assert rescue(UpstreamConnectError("x"), False)[:2] == (503, "UF")
    assert rescue(UpstreamTimeout("x"), False)[:2] == (504, "UT")
    assert rescue(BadRequest("x"), True)[:2] == (400, "DPE")


def test_close_is_announced_and_the_flag_is_not_a_header():
    payload = rescue(UpstreamTimeout(), close=True)[2]
    head, _, body = payload.partition(b"\r\n\r\n")
    assert head.endswith(b"connection: close") and b"flag" not in head.lower()
    assert body == b"gateway timeout\n"


def test_an_unexpected_exception_is_a_500_without_its_message():
    status, flag, payload = rescue(KeyError("secret internals"), close=True)
    assert status == 500 and b"secret" not in payload and payload.startswith(b"HTTP/1.1 500 ")

"""proxy/http/telemetry.py report() and the exchange: what a real listener puts in the AccessRecord for Envoy's
default fields (request bytes, upstream service time, protocol, upstream host and proved identity, the head for
headers and trace), on a completed request, a failed one and a CONNECT tunnel."""

from __future__ import annotations

from types import SimpleNamespace

from proxy.core.access import AccessRecord
from proxy.core.errors import NoHealthyUpstream
from proxy.core.target import Target
from proxy.http.telemetry import report
from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_response


class Tls:
    expected_id = "spiffe://cluster.local/ns/default/sa/reviews"


async def test_a_proxied_request_records_body_bytes_both_ways_the_upstream_time_and_host(start_proxy, connect):
    records: list[AccessRecord] = []
    async with Upstream(keep_alive_echo) as up:
        proxy = await start_proxy(StubRouter({"reviews": up.target}), on_complete=records.append)
        reader, writer = await connect(proxy.port)
        writer.write(b"POST /r HTTP/1.1\r\nhost: reviews:9080\r\nuser-agent: t/1\r\nx-forwarded-for: 10.9.9.9\r\n"
                     b"content-length: 5\r\n\r\nhello")
        await read_response(reader)
        writer.write(b"GET /x HTTP/1.0\r\nhost: reviews\r\n\r\n")
        await read_response(reader)
        writer.close()
    post, old = records
    assert (post.bytes_received, post.bytes_sent, post.protocol) == (5, 5, "HTTP/1.1")
    assert 0 <= post.upstream_ms <= post.duration_ms
    assert post.upstream_host == f"127.0.0.1:{up.port}" and post.upstream_peer == ""  # plaintext: no identity
    assert post.head is not None and post.head.header(b"user-agent") == b"t/1"
    assert old.protocol == "HTTP/1.0" and old.bytes_received == 0


async def test_a_request_no_upstream_answered_has_no_service_time(start_proxy, connect):
    records: list[AccessRecord] = []
    proxy = await start_proxy(StubRouter({"reviews": NoHealthyUpstream("none")}), on_complete=records.append)
    reader, writer = await connect(proxy.port)
    writer.write(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
    assert (await read_response(reader)).status == 503
    writer.close()
    (record,) = records
    assert (record.status, record.flag, record.upstream_ms, record.upstream_host) == (503, "UH", -1.0, "")


def test_the_upstream_identity_is_named_only_once_the_upstream_answered():
    target = Target("10.0.0.7", 15006, "outbound|9080||reviews", tls=Tls())
    records: list[AccessRecord] = []
    proto = SimpleNamespace(shared=SimpleNamespace(metrics=None, on_complete=records.append))  # as report() reads it

    def ended(status: int, flag: str, sent: int, upstream_at: float) -> SimpleNamespace:
        """An exchange at its end as report() reads it: began at loop time 1.0, upstream answered at `upstream_at`."""
        return SimpleNamespace(proto=proto, head=None, upstream=target, status=status, flag=flag, bytes_received=0,
                               bytes_sent=sent, t0=1.0, http11=True, details="", upstream_at=upstream_at)

    report(ended(200, "-", 3, 1.001), 1.002)  # type: ignore[arg-type]
    report(ended(503, "UF", 0, 0.0), 1.002)  # type: ignore[arg-type]  # the connect (and its handshake) failed
    answered, failed = records
    assert round(answered.duration_ms, 6) == 2.0 and round(answered.upstream_ms, 6) == 1.0
    assert failed.upstream_ms == -1.0 and answered.protocol == "HTTP/1.1"
    assert (answered.upstream_host, answered.upstream_peer) == ("10.0.0.7:15006", Tls.expected_id)
    assert (failed.upstream_host, failed.upstream_peer) == ("10.0.0.7:15006", "")
    v6 = AccessRecord("GET", "h", "/", 200, "-", "c", 0, 1.0, upstream_ms=0.5, target=Target("::1", 80, "c"))
    assert v6.upstream_host == "[::1]:80"

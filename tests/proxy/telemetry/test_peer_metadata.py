"""The peer metadata exchange: the header's encoding and its bounds, and the listeners over loopback sockets --
outbound adds it for sidecar endpoints only, once per upstream connection, and strips an app's forgery, inbound
reads it into head.peer for every request of the connection and never lets it reach the app -- and the metrics
both listeners record through report()."""

from __future__ import annotations

import pytest
from tests.proxy.http_helpers import StubRouter, Upstream, keep_alive_echo, read_response, refused_port

from proto.observations import PeerMetadata
from proto.xds import Endpoint
from proxy.core.target import Target
from proxy.http.head import Mode
from proxy.telemetry import peer_metadata
from proxy.telemetry.http_metrics import InboundMetrics, OutboundMetrics
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.peer_metadata import CACHE_SIZE, HEADER, MAX_VALUE, PeerMetadataCache, without_header

pytestmark = pytest.mark.timeout(30)

ME = LocalWorkload("productpage", "default", {"app": "productpage", "version": "v1"})
LINE = peer_metadata.header_line(ME.peer_metadata())
VALUE = peer_metadata.encode(ME.peer_metadata())


def encoded_of_length(size: int) -> bytes:
    for k in range(1, 4 * size):
        value = peer_metadata.encode(PeerMetadata(workload="w" * k, namespace="default"))
        if len(value) == size:
            return value
    raise AssertionError(size)


def test_the_header_value_round_trips_and_garbage_is_no_metadata():
    assert peer_metadata.decode(VALUE) == ME.peer_metadata()
    assert LINE == HEADER + b": " + VALUE + b"\r\n"
    assert peer_metadata.decode(b"not base64 !") is None
    assert peer_metadata.decode(peer_metadata.encode(PeerMetadata(workload="w", namespace="n"))[:-3]) is None
    assert peer_metadata.decode(b"eyJ3b3JrbG9hZCI6MX0") is None  # {"workload":1}: valid JSON, wrong type


def test_a_value_of_max_value_bytes_is_read_and_a_longer_one_is_not():
    at, over = encoded_of_length(MAX_VALUE), encoded_of_length(MAX_VALUE + 2)  # unpadded base64: never +1
    assert peer_metadata.decode(at) is not None
    assert peer_metadata.decode(over) is None


def test_the_decoded_values_are_cached_up_to_cache_size_then_started_over():
    cache = PeerMetadataCache()
    for i in range(CACHE_SIZE):
        cache.get(b"v%d" % i)
    assert len(cache.values) == CACHE_SIZE
    assert cache.get(VALUE) == ME.peer_metadata()  # one over: started over
    assert list(cache.values) == [VALUE]


def test_the_line_is_cut_out_of_a_head_where_a_sidecar_writes_it_or_elsewhere():
    start = b"GET / HTTP/1.1\r\nhost: reviews\r\nx-request-id: 1\r\n"
    assert without_header(start + LINE + b"\r\n", VALUE) == start + b"\r\n"
    assert without_header(b"GET / HTTP/1.1\r\n" + LINE + b"host: reviews\r\n\r\n", VALUE) == \
        b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n"
    upper = LINE.replace(HEADER, HEADER.upper())  # not as a sidecar writes it: the head is rebuilt instead
    assert without_header(start + upper + b"\r\n", VALUE) is None
    assert without_header(start + LINE.replace(b": ", b":  ") + b"\r\n", VALUE) is None


async def test_outbound_adds_its_metadata_for_a_sidecar_endpoint_and_strips_the_apps(start_proxy, connect):
    async with Upstream(keep_alive_echo) as sidecar, Upstream(keep_alive_echo) as plain:
        router = StubRouter({"reviews": Target("127.0.0.1", sidecar.port, "outbound|9080||reviews",
                                               Endpoint(address="127.0.0.1", sidecar=True)),
                             "db": Target("127.0.0.1", plain.port, "outbound|80||db", Endpoint(address="127.0.0.1"))})
        proxy = await start_proxy(router, peer_line=LINE)
        reader, writer = await connect(proxy.port)
        forged = HEADER + b": " + peer_metadata.encode(PeerMetadata(workload="admin", namespace="kube-system"))
        for host in (b"reviews", b"db"):
            for extra in (b"", forged + b"\r\n", b"transfer-encoding: chunked\r\n"):  # as received / rebuilt
                body = b"0\r\n\r\n" if b"chunked" in extra else b""
                writer.write(b"GET /x HTTP/1.1\r\nhost: %s\r\n%s\r\n%s" % (host, extra, body))
                assert (await read_response(reader)).status == 200
    # told once per upstream connection (its first request), never the app's forgery
    told = [[v for n, v in request.headers if n == HEADER] for request in sidecar.requests]
    assert told == [[VALUE], [], []]
    for request in plain.requests:
        assert request.header(HEADER) is None
    assert len(plain.requests) == 3


async def test_inbound_reads_the_callers_metadata_and_the_app_never_sees_it(start_proxy, connect):
    async with Upstream(keep_alive_echo) as app:
        router = StubRouter({"reviews": app.target})
        proxy = await start_proxy(router, Mode.INBOUND, peers=PeerMetadataCache())
        reader, writer = await connect(proxy.port)
        upper = HEADER.upper() + b": " + VALUE + b"\r\n"
        for lines in (b"x-request-id: 1\r\n" + LINE, LINE + b"x-request-id: 2\r\n", upper,
                      LINE + b"connection: keep-alive, x-foo\r\n", LINE + LINE):
            writer.write(b"GET /r HTTP/1.1\r\nhost: reviews\r\n%s\r\n" % lines)
            assert (await read_response(reader)).status == 200
    for request in app.requests:
        assert request.header(HEADER) is None and HEADER not in request.raw_head.lower()
    assert len(app.requests) == 5
    assert [h.peer for h in router.heads] == [ME.peer_metadata()] * 4 + [None]  # two copies: neither believed


async def test_both_listeners_record_every_exchange_through_report(start_proxy, connect):
    out, inbound = OutboundMetrics(ME), InboundMetrics(ME)
    async with Upstream(keep_alive_echo) as up:
        with refused_port() as closed_port:
            router = StubRouter({"reviews": Target("127.0.0.1", up.port, "outbound|9080||reviews.default.svc.cluster"
                                                   ".local", Endpoint(address="127.0.0.1", sidecar=True)),
                                 "down": Target("127.0.0.1", closed_port, "outbound|80||down.default.svc.cluster.local")})
            proxy = await start_proxy(router, metrics=out, peer_line=LINE)
            inbound_proxy = await start_proxy(StubRouter({"reviews": up.target}), Mode.INBOUND, metrics=inbound,
                                              peers=PeerMetadataCache())
            reader, writer = await connect(proxy.port)
            writer.write(b"POST /x HTTP/1.1\r\nhost: reviews\r\ncontent-length: 7\r\n\r\npayload")
            ok = await read_response(reader)
            writer.write(b"GET / HTTP/1.1\r\nhost: down\r\n\r\n")
            assert (await read_response(reader)).status == 503
            writer.write(b"GET / HTTP/1.1\r\nhost: nowhere\r\n\r\n")
            assert (await read_response(reader)).status == 404
            reader2, writer2 = await connect(inbound_proxy.port)
            writer2.write(b"GET /y HTTP/1.1\r\nhost: reviews\r\n" + LINE + b"\r\n")
            assert (await read_response(reader2)).status == 200
    by_code = {s.labels[21]: s for s in out.all()}
    assert set(by_code) == {"200", "503", "404"}
    assert (by_code["200"].requests, by_code["200"].request_bytes_sum, by_code["200"].response_bytes_sum) == (
        1, 7, len(ok.body))
    assert 0 < by_code["200"].duration_sum < 5000
    assert by_code["503"].labels[23] == "UF" and by_code["404"].labels[23] == "NR"
    (received,) = inbound.all()
    assert received.requests == 1 and received.labels[1] == "productpage-v1"  # source_workload from the header


async def test_a_connection_told_once_names_its_caller_on_every_request_and_a_new_connection_is_told_again(
        start_proxy, connect):
    async with Upstream(keep_alive_echo) as app, Upstream(keep_alive_echo) as sidecar:
        inbound_router = StubRouter({"reviews": app.target})
        inbound = await start_proxy(inbound_router, Mode.INBOUND, peers=PeerMetadataCache())
        reader, writer = await connect(inbound.port)
        for first in (True, False, False):  # as the calling sidecar sends them on one connection
            writer.write(b"GET /r HTTP/1.1\r\nhost: reviews\r\n%s\r\n" % (LINE if first else b""))
            assert (await read_response(reader)).status == 200
        other_reader, other_writer = await connect(inbound.port)  # another caller, never told: unknown
        other_writer.write(b"GET /r HTTP/1.1\r\nhost: reviews\r\n\r\n")
        assert (await read_response(other_reader)).status == 200
        assert [head.peer for head in inbound_router.heads] == [ME.peer_metadata()] * 3 + [None]

        # outbound: each new upstream connection's first request tells, whatever the client connection
        target = Target("127.0.0.1", sidecar.port, "outbound|9080||reviews", Endpoint(address="127.0.0.1", sidecar=True))
        outbound = await start_proxy(StubRouter({"reviews": target}), peer_line=LINE)
        for _ in range(2):
            out_reader, out_writer = await connect(outbound.port)
            out_writer.write(b"GET /x HTTP/1.1\r\nhost: reviews\r\n\r\nGET /y HTTP/1.1\r\nhost: reviews\r\n\r\n")
            assert (await read_response(out_reader)).status == 200
            assert (await read_response(out_reader)).status == 200
    told = [[v for n, v in request.headers if n == HEADER] for request in sidecar.requests]
    assert told == [[VALUE], [], [], []]  # one pooled upstream connection carried all four

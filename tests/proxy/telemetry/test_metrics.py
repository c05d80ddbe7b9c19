"""Recording Istio's standard metrics without sockets: labels in HTTP_LABELS order, Envoy's default buckets,
the bound on label sets, and the Prometheus text and bus snapshot read back."""

from __future__ import annotations

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from proto.observations import HTTP_LABELS, TCP_LABELS, MetricsSnapshot, PeerMetadata
from proto.xds import Endpoint
from proxy.core.downstream import Downstream
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.telemetry.exposition import SidecarMetrics
from proxy.telemetry.http_metrics import InboundMetrics, OutboundMetrics
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.metrics import BUCKETS, HttpRecorder, TcpRecorder

ME = LocalWorkload("productpage", "default", {"app": "productpage", "version": "v1"},
                   service_account="bookinfo-productpage")
REVIEWS = "reviews.default.svc.cluster.local"
REVIEWS_V2 = Endpoint(address="10.0.0.2", ports={9080: 15006}, labels={"app": "reviews", "version": "v2"},
                      sidecar=True, identity="spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
                      workload_name="reviews-v2", cluster="east")


def labels_of(values: tuple[str, ...] | list[str], names: tuple[str, ...] = HTTP_LABELS) -> dict[str, str]:
    assert len(values) == len(names)
    return dict(zip(names, values))


def only(recorder: HttpRecorder) -> dict[str, str]:
    (series,) = recorder.all()
    return labels_of(series.labels)


def head(host: str = "reviews", principal: str | None = None, peer: PeerMetadata | None = None) -> RequestHead:
    h = RequestHead("GET", host, 9080, "/reviews/0", [], downstream=Downstream(principal))
    h.peer = peer
    return h


def test_buckets_are_envoys_default_histogram_buckets():
    assert BUCKETS == (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
                       600000, 1800000, 3600000)


def test_a_value_counts_in_the_first_bucket_whose_bound_is_at_or_above_it():
    out = OutboundMetrics(ME)
    target = Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2)
    for ms, received, sent in ((0.5, 0, 0), (0.51, 1, 1), (1.0, 5, 6), (3600000.0, 3600000, 3600000),
                               (3600000.1, 3600001, 10 ** 9)):
        out.record(head(), target, 200, "-", received, sent, ms)
    (s,) = out.all()
    assert s.requests == 5
    assert s.duration[:3] == [1, 2, 0] and s.duration[18:] == [1, 1]  # le 0.5, le 1 (0.51, 1.0), 3600000, +Inf
    assert s.request_bytes[:3] == [1, 1, 1] and s.request_bytes[18:] == [1, 1]  # 0 -> le 0.5, 1 -> le 1, 5 -> le 5
    assert s.response_bytes[:4] == [1, 1, 0, 1]  # 6 bytes -> le 10
    assert s.duration_sum == 0.5 + 0.51 + 1.0 + 3600000.0 + 3600000.1
    assert s.request_bytes_sum == 1 + 5 + 3600000 + 3600001 and s.response_bytes_sum == 1 + 6 + 3600000 + 10 ** 9


def test_outbound_labels_name_this_workload_as_source_and_the_picked_endpoint_as_destination():
    out = OutboundMetrics(ME)
    tls = object()  # the endpoint's TlsOrigination: the upstream connection is mutual TLS
    out.record(head(), Target("10.0.0.2", 15006, f"outbound|9080|v2|{REVIEWS}", REVIEWS_V2, tls=tls),
               200, "-", 0, 120, 3.0)
    assert only(out) == {
        "reporter": "source", "source_workload": "productpage-v1", "source_workload_namespace": "default",
        "source_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage", "source_app": "productpage",
        "source_version": "v1", "source_canonical_service": "productpage", "source_canonical_revision": "v1",
        "source_cluster": "unknown", "destination_workload": "reviews-v2", "destination_workload_namespace": "default",
        "destination_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-reviews", "destination_app": "reviews",
        "destination_version": "v2", "destination_service": REVIEWS, "destination_service_name": "reviews",
        "destination_service_namespace": "default", "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2", "destination_cluster": "east", "request_protocol": "http",
        "response_code": "200", "grpc_response_status": "", "response_flags": "-",
        "connection_security_policy": "unknown"}


def test_outbound_plaintext_has_no_source_principal_as_envoy_has_no_local_certificate():
    out = OutboundMetrics(ME)
    out.record(head(), Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2), 200, "-", 0, 0, 1.0)
    assert only(out)["source_principal"] == "unknown"


def test_a_request_the_sidecar_answers_itself_is_counted_with_what_is_known():
    out = OutboundMetrics(ME)
    out.record(head("ratings"), None, 404, "NR", 0, 0, 0.2)  # no route: nothing was picked
    labels = only(out)
    assert (labels["response_code"], labels["response_flags"]) == ("404", "NR")
    assert (labels["destination_service"], labels["destination_service_name"]) == ("ratings", "ratings")
    assert labels["destination_workload"] == labels["destination_principal"] == "unknown"
    assert labels["source_workload"] == "productpage-v1"


def test_passthrough_is_named_as_istio_names_it():
    out = OutboundMetrics(ME)
    out.record(head("example.com"), Target("example.com", 80, "PassthroughCluster"), 200, "-", 0, 0, 5.0)
    labels = only(out)
    assert (labels["destination_service"], labels["destination_service_name"]) == ("example.com", "PassthroughCluster")


def test_equal_label_sets_from_different_endpoint_objects_are_one_series():
    out = OutboundMetrics(ME)
    for _ in range(2):  # a push decodes new Endpoint objects with the same values
        copy = msgspec.json.decode(msgspec.json.encode(REVIEWS_V2), type=Endpoint)
        out.record(head(), Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", copy), 200, "-", 0, 0, 1.0)
    (series,) = out.all()
    assert series.requests == 2


def test_inbound_labels_take_the_caller_from_its_certificate_and_peer_metadata():
    inbound = InboundMetrics(LocalWorkload("reviews", "default", {"app": "reviews", "version": "v2"},
                                           service_account="bookinfo-reviews", cluster="east"))
    # the metadata claims another namespace: the certificate's wins, as Istio's filter prefers the SAN
    peer = PeerMetadata(workload="productpage-v1", namespace="elsewhere", app="productpage", version="v1",
                        canonical_service="productpage", canonical_revision="v1", cluster="west")
    inbound.record(head(principal="cluster.local/ns/default/sa/bookinfo-productpage", peer=peer), None, 503, "UF",
                   12, 0, 2.0)
    labels = only(inbound)
    assert labels["reporter"] == "destination"
    assert (labels["source_workload"], labels["source_workload_namespace"], labels["source_app"],
            labels["source_version"], labels["source_cluster"]) == ("productpage-v1", "default", "productpage", "v1",
                                                                    "west")
    assert labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert labels["destination_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert (labels["destination_workload"], labels["destination_service"], labels["destination_cluster"]) == (
        "reviews-v2", REVIEWS, "east")
    assert (labels["connection_security_policy"], labels["response_code"], labels["response_flags"]) == (
        "mutual_tls", "503", "UF")


def test_inbound_plaintext_without_metadata_is_unknown_and_none():
    inbound = InboundMetrics(ME)
    inbound.record(head(), None, 200, "-", 0, 0, 1.0)
    labels = only(inbound)
    assert labels["source_workload"] == labels["source_principal"] == labels["source_workload_namespace"] == "unknown"
    assert labels["destination_principal"] == "unknown" and labels["connection_security_policy"] == "none"


def test_the_label_sets_of_a_listener_are_bounded_at_max_series_then_fold_into_one_overflow_series():
    out = OutboundMetrics(ME, max_series=3)
    target = Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2)
    for status in (200, 201, 202):  # at the bound: three series, nothing folded
        out.record(head(), target, status, "-", 0, 0, 1.0)
    assert len(out.all()) == 3 and out.overflowed == 0
    out.record(head(), target, 203, "-", 0, 0, 1.0)  # one over
    out.record(head(), target, 204, "-", 0, 0, 1.0)
    out.record(head(), target, 200, "-", 0, 0, 1.0)  # a known label set still counts in its own series
    assert out.overflowed == 2
    overflow = out.all()[-1]
    assert overflow.requests == 2 and len(out.all()) == 4
    labels = labels_of(overflow.labels)
    assert (labels["reporter"], labels["request_protocol"], labels["response_code"],
            labels["destination_service"]) == ("source", "http", "overflow", "overflow")


def test_peers_are_bounded_too_so_metadata_from_callers_cannot_grow_memory():
    inbound = InboundMetrics(ME, max_series=2)
    for i in range(5):
        inbound.record(head(peer=PeerMetadata(workload=f"w{i}", namespace="x")), None, 200, "-", 0, 0, 1.0)
    assert len(inbound.peers) == 2 and len(inbound.series) == 2 and inbound.overflowed == 3


def test_the_per_request_memo_keeps_series_apart_follows_pushes_and_is_bounded(monkeypatch):  # type: ignore[no-untyped-def]
    from proxy.telemetry import http_metrics

    out = OutboundMetrics(ME)
    target = Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2)
    for status, flag in ((200, "-"), (200, "-"), (503, "-"), (503, "UF"), (200, "-")):
        out.record(head(), target, status, flag, 0, 0, 1.0)
    counts = {(labels_of(s.labels)["response_code"], labels_of(s.labels)["response_flags"]): s.requests
              for s in out.all()}
    assert counts == {("200", "-"): 3, ("503", "-"): 1, ("503", "UF"): 1}
    # a push makes a new endpoint object (another version label): its own series, never the memo's old one
    v3 = msgspec.structs.replace(REVIEWS_V2, labels={"app": "reviews", "version": "v3"})
    out.record(head(), Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", v3), 200, "-", 0, 0, 1.0)
    assert sorted(labels_of(s.labels)["destination_version"] for s in out.all()
                  if labels_of(s.labels)["response_code"] == "200") == ["v2", "v3"]
    # the same endpoint reached over TLS now (a push turned on mTLS): the memo's plaintext entry is not used
    plain = out.hot[(id(REVIEWS_V2), 200, "-")][3]
    tls = Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2, tls=object())
    out.record(head(), tls, 200, "-", 0, 0, 1.0)
    mtls = out.hot[(id(REVIEWS_V2), 200, "-")][3]
    assert mtls is not plain and mtls.requests == 1 and plain.requests == 3
    assert labels_of(mtls.labels)["source_principal"] != labels_of(plain.labels)["source_principal"]
    # bounded: past HOT_CACHE entries it starts over, counting on
    monkeypatch.setattr(http_metrics, "HOT_CACHE", 2)
    inbound = InboundMetrics(ME)
    for status in (200, 201, 202, 203, 200):
        inbound.record(head(principal="cluster.local/ns/a/sa/b"), None, status, "-", 0, 0, 1.0)
        assert len(inbound.hot) <= 2
    assert sum(s.requests for s in inbound.all()) == 5 and len(inbound.all()) == 4
    # callers differing only in principal or metadata never share a series
    for principal in ("cluster.local/ns/a/sa/b", "cluster.local/ns/a/sa/c"):
        inbound.record(head(principal=principal), None, 200, "-", 0, 0, 1.0)
    assert len({s.labels for s in inbound.all()}) == len(inbound.all()) == 5


def test_tcp_label_sets_are_bounded_at_max_series():
    tcp = TcpRecorder("outbound_tcp", "source", max_series=1)
    peer = tcp.peer(tuple(HTTP_LABELS))  # any values
    tcp.counts(peer, "-").opened += 1  # at the bound
    assert tcp.overflowed == 0
    tcp.counts(peer, "UF").opened += 1  # one over
    assert tcp.overflowed == 1 and [s.opened for s in tcp.all()] == [1, 1]
    assert labels_of(tcp.all()[-1].labels, TCP_LABELS)["response_flags"] == "overflow"


def recorded() -> SidecarMetrics:
    out, inbound = OutboundMetrics(ME), InboundMetrics(ME)
    target = Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2)
    for ms in (0.3, 3.0, 30.0, 30.0):
        out.record(head(), target, 200, "-", 0, 100, ms)
    out.record(head(), target, 503, "UF", 7, 0, 1.0)
    tcp = TcpRecorder("outbound_tcp", "source")
    counts = tcp.counts(tcp.peer(tuple(HTTP_LABELS)), "-")
    counts.sent, counts.received, counts.opened, counts.closed = 120, 45, 2, 1
    return SidecarMetrics([out, inbound], [tcp])


def test_prometheus_text_parses_back_with_istios_names_labels_and_cumulative_buckets():
    text = recorded().prometheus().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"istio_requests", "istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes",
            "istio_tcp_sent_bytes", "istio_tcp_received_bytes", "istio_tcp_connections_opened",
            "istio_tcp_connections_closed", "isthmus_metrics_series_overflow"} <= set(families)
    requests = {s.labels["response_code"]: s.value for s in families["istio_requests"].samples}
    assert requests == {"200": 4.0, "503": 1.0}
    sample = next(s for s in families["istio_requests"].samples if s.labels["response_code"] == "200")
    assert set(sample.labels) == set(HTTP_LABELS)
    buckets = {s.labels["le"]: s.value for s in families["istio_request_duration_milliseconds"].samples
               if s.name.endswith("_bucket") and s.labels["response_code"] == "200"}
    assert (buckets["0.5"], buckets["5.0"], buckets["25.0"], buckets["50.0"], buckets["+Inf"]) == (1, 2, 2, 4, 4)
    total = next(s.value for s in families["istio_request_duration_milliseconds"].samples
                 if s.name.endswith("_sum") and s.labels["response_code"] == "200")
    assert total == 63.3
    tcp = {f: next(iter(families[f].samples)).value for f in ("istio_tcp_sent_bytes", "istio_tcp_received_bytes",
                                                               "istio_tcp_connections_opened",
                                                               "istio_tcp_connections_closed")}
    assert tcp == {"istio_tcp_sent_bytes": 120, "istio_tcp_received_bytes": 45, "istio_tcp_connections_opened": 2,
                   "istio_tcp_connections_closed": 1}


def test_the_bus_snapshot_carries_the_same_numbers():
    snapshot = recorded().snapshot("productpage-1", "abc", "default", 3)
    back = msgspec.json.decode(msgspec.json.encode(snapshot), type=MetricsSnapshot)
    by_code = {labels_of(s.labels)["response_code"]: s for s in back.http}
    assert by_code["200"].requests == 4 and by_code["200"].duration_ms.counts[:6] == [1, 0, 1, 0, 0, 2]
    assert by_code["200"].response_bytes.sum == 400.0 and by_code["503"].request_bytes.sum == 7.0
    assert len(by_code["200"].duration_ms.counts) == len(BUCKETS) + 1
    (tcp,) = back.tcp
    assert (tcp.sent_bytes, tcp.received_bytes, tcp.opened, tcp.closed) == (120, 45, 2, 1)
    assert (back.seq, back.instance, back.namespace) == (3, "abc", "default")


def test_the_admin_port_serves_them_at_envoys_path():
    from proxy.admin import AdminServer

    metrics = recorded()
    admin = AdminServer("127.0.0.1", 0, lambda: True, dict, dict, prometheus=metrics.prometheus)
    status, content_type, body = admin.respond("GET", "/stats/prometheus")
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert b'istio_requests_total{' in body and b'reporter="source"' in body
    assert admin.respond("GET", "/stats/prometheus?usedonly")[0] == 200
    assert AdminServer("127.0.0.1", 0, lambda: True, dict, dict).respond("GET", "/stats/prometheus")[0] == 404


def test_the_snapshot_docs_bus_shows_is_one_a_sidecar_sends():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "bus.md").read_text()
    [example] = [b for b in re.findall(r"```json\n(.*?)```", doc, re.S) if '"instance"' in b]
    snapshot = msgspec.json.decode(example, type=MetricsSnapshot)
    (http,), (tcp,) = snapshot.http, snapshot.tcp
    assert len(http.labels) == len(HTTP_LABELS) and len(tcp.labels) == len(TCP_LABELS)
    assert labels_of(http.labels)["connection_security_policy"] == "mutual_tls"
    assert labels_of(tcp.labels, TCP_LABELS)["request_protocol"] == "tcp"
    assert sum(http.duration_ms.counts) == http.requests and len(http.duration_ms.counts) == len(BUCKETS) + 1


async def test_a_scrape_at_the_series_bound_is_rendered_off_the_loop():
    """At ISTHMUS_METRICS_MAX_SERIES label sets (any caller can get there by forging peer metadata) the text is
    tens of MB; rendered on the loop it stalled every request of the sidecar for as long as the render took.
    Bound relative to that render's own time here: off the loop, the loop keeps turning."""
    import asyncio
    import time

    recorder = HttpRecorder("inbound", "destination")
    for i in range(1000):
        recorder.count(recorder.peer((f"caller-{i}", *["spiffe://cluster.local/ns/x/sa/y"] * (len(HTTP_LABELS) - 1))),
                       200, "-", 1, 2, 3.0)
    metrics = SidecarMetrics([recorder], [])
    start = time.monotonic()
    expected = metrics.prometheus()
    render = time.monotonic() - start
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    body = await metrics.prometheus_off_loop()
    tick.cancel()
    assert body == expected and len(body) > 20_000_000
    # on the loop, one stall would last the whole render (>= render); off it, the longest is the GIL's switch
    # interval plus what a loaded machine's scheduler adds (it failed under load at render / 2), so the bound
    # sits between the two
    assert max(gaps) < 0.8 * render, (max(gaps), render)


def test_counts_folded_in_batches_are_exactly_those_of_one_request_at_a_time():
    """HttpCounts folds pending requests in bulk (sorted, bisected, sums in arrival order): every bucket and
    every sum equals counting each request alone, across fold boundaries, values on the bounds and past them."""
    import random
    from bisect import bisect_left

    from proxy.telemetry.metrics import BYTES_BOUNDS, DURATION_BOUNDS, FOLD, SLOTS, HttpCounts

    rnd = random.Random(15)
    edges = [float(b) for b in BUCKETS]
    counts = HttpCounts(())
    duration, request_bytes, response_bytes = [0] * SLOTS, [0] * SLOTS, [0] * SLOTS
    duration_sum, request_sum, response_sum = 0.0, 0, 0
    for i in range(FOLD * 7 + 5):
        ms = rnd.choice((rnd.random() * 3.0, rnd.choice(edges), rnd.random() * 4e6, 0.0))
        received = 0 if i < FOLD * 2 else rnd.choice((0, 0, 1, 5, 6, 612, 3600000, 3600001))
        sent = rnd.choice((612, 612, 0, 1, int(rnd.random() * 10 ** 7)))
        if i % 3 == 0:  # the recorder's inline path and `add` are one path
            counts.add(ms, received, sent)
        else:
            counts.pending.append((ms, received, sent))
            if len(counts.pending) >= FOLD:
                counts.fold()
        duration[bisect_left(DURATION_BOUNDS, ms)] += 1
        duration_sum += ms
        request_bytes[bisect_left(BYTES_BOUNDS, received)] += 1
        request_sum += received
        response_bytes[bisect_left(BYTES_BOUNDS, sent)] += 1
        response_sum += sent
        if i in (3, FOLD - 1, FOLD, FOLD * 3 + 1):  # read mid-batch: what is read includes every request so far
            assert counts.requests == i + 1 and counts.duration == duration and counts.duration_sum == duration_sum
    assert counts.requests == FOLD * 7 + 5 and not counts.pending
    assert (counts.duration, counts.request_bytes, counts.response_bytes) == (duration, request_bytes, response_bytes)
    assert counts.duration_sum == duration_sum  # the same float, bit for bit: added in the same order
    assert (counts.request_bytes_sum, counts.response_bytes_sum) == (request_sum, response_sum)


def test_a_series_holds_at_most_fold_requests_pending():
    from proxy.telemetry.metrics import FOLD

    out = OutboundMetrics(ME)
    target = Target("10.0.0.2", 15006, f"outbound|9080||{REVIEWS}", REVIEWS_V2)
    for i in range(FOLD * 3):
        out.record(head(), target, 200, "-", 0, 612, 1.5)
        assert len(out.hot[(id(REVIEWS_V2), 200, "-")][3].pending) == (i + 1) % FOLD

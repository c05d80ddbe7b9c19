"""The history behind /api/graph and /api/series: rates from differences, percentiles as Prometheus'
histogram_quantile, Kiali-like nodes and edges."""

from __future__ import annotations

import pytest

from services.telemetry.history import History, histogram_quantile
from services.telemetry.merge import MetricsMerger
from tests.telemetry.fixtures import http, snapshot

REVIEWS = "reviews.default.svc.cluster.local"


def test_histogram_quantile_interpolates_as_prometheus() -> None:
    bounds = (1.0, 2.0, 4.0)
    # Prometheus: rank 0.5*10 = 5 falls in (1, 2] holding 4 after 2 below: 1 + (2-1) * (5-2)/4
    assert histogram_quantile(0.5, [2, 4, 4, 0], bounds) == pytest.approx(1.75)
    assert histogram_quantile(0.1, [2, 4, 4, 0], bounds) == pytest.approx(0.5)  # the first bucket starts at 0
    assert histogram_quantile(0.99, [0, 0, 1, 9], bounds) == 4.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [0, 0, 0, 0], bounds) is None


def test_graph_shows_caller_service_and_versions_with_rates_errors_mtls_and_latency() -> None:
    m, h = MetricsMerger(), History()
    h.record(0.0, m.totals)
    m.add(snapshot(1, [http(60, duration_ms=7), http(30, duration_ms=7, destination_version="v2",
                                                        destination_workload="reviews-v2", response_code="503",
                                                        connection_security_policy="none")]),
          "default", "reviews", 1.0)
    graph = h.graph(now=30.0, window=60, totals=m.totals)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["default/reviews"].kind == "service" and nodes["default/reviews"].service == REVIEWS
    assert nodes["default/reviews/v1"].kind == "workload" and nodes["default/reviews/v1"].version == "v1"
    assert nodes["default/productpage/v1"].app == "productpage"
    edges = {(e.source, e.target): e for e in graph.edges}
    into = edges[("default/productpage/v1", "default/reviews")]
    assert into.rps == pytest.approx(3.0) and into.error_rate == pytest.approx(1 / 3)
    assert into.mtls == pytest.approx(2 / 3) and into.protocol == "http"
    v1 = edges[("default/reviews", "default/reviews/v1")]
    assert v1.rps == pytest.approx(2.0) and v1.error_rate == 0 and v1.mtls == 1.0
    assert 5 < v1.p50_ms <= 10 and 5 < v1.p99_ms <= 10  # 7 ms lands in (5, 10]
    assert edges[("default/reviews", "default/reviews/v2")].error_rate == 1.0


def test_graph_rates_are_over_the_window_only() -> None:
    m, h = MetricsMerger(), History()
    m.add(snapshot(1, [http(1000)]), "default", "reviews", 0)
    h.record(0.0, m.totals)
    m.add(snapshot(2, [http(1010)]), "default", "reviews", 50)
    h.record(50.0, m.totals)
    m.add(snapshot(3, [http(1020)]), "default", "reviews", 60)
    graph = h.graph(now=60.0, window=10, totals=m.totals)
    edge = next(e for e in graph.edges if e.target == "default/reviews")
    assert edge.rps == pytest.approx(1.0)  # 10 requests in the last 10 s, not 1020 since the start


def test_series_gives_a_point_per_step_for_one_service() -> None:
    m, h = MetricsMerger(), History(points=720)
    for step in range(4):
        m.add(snapshot(step + 1, [http(50 * step, duration_ms=30)]), "default", "reviews", 5.0 * step)
        h.record(5.0 * step, m.totals)
    series = h.series(REVIEWS, minutes=15, now=15.0)
    assert series.namespace == "default" and series.step_s == 5.0
    assert [p.rps for p in series.points] == pytest.approx([10.0, 10.0, 10.0])
    assert all(25 < (p.p50_ms or 0) <= 50 for p in series.points)


def test_history_keeps_at_most_its_points() -> None:
    h = History(points=3)
    for t in range(5):
        h.record(float(t), {})
    assert [p[0] for p in h.points] == [2.0, 3.0, 4.0]


def test_a_tcp_edge_carries_bytes_per_second_and_its_mtls_share() -> None:
    from proto.observations import TcpSeries
    from tests.telemetry.fixtures import tcp_labels

    m, h = MetricsMerger(), History()
    h.record(0.0, m.totals)
    m.add(snapshot(1, [], tcp=[TcpSeries(labels=tcp_labels(request_protocol="tcp"), sent_bytes=3000,
                                         received_bytes=1000, opened=1),
                               TcpSeries(labels=tcp_labels(request_protocol="tcp", connection_security_policy="none",
                                                           source_workload="legacy", source_app="legacy"),
                                         sent_bytes=1000, received_bytes=0, opened=1)]),
          "default", "reviews", 1.0)
    graph = h.graph(now=10.0, window=60, totals=m.totals)
    into = next(e for e in graph.edges if e.target == "default/reviews/v1")
    assert into.protocol == "tcp" and into.rps == 0 and into.tcp_bytes_per_s == 500.0
    assert into.mtls == 0.8  # 4000 of 5000 bytes over mutual TLS

"""The merge of cumulative proxy snapshots into Istio series: resets, retirement, bounds, replicas."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proto.observations import TcpSeries
from services.telemetry.istio import HTTP, render
from services.telemetry.merge import MAX_LABEL, MetricsMerger, SnapshotRefused
from services.telemetry.settings import TelemetrySettings
from services.telemetry.state import Telemetry
from tests.telemetry.fixtures import encoded, http, labels, snapshot, tcp_labels

SUBJECT = "isthmus.telemetry.metrics.default.reviews"


def requests_total(merger: MetricsMerger, **label: str) -> float:
    key = (HTTP, tuple(labels(**label)))
    return merger.totals[key][0] if key in merger.totals else 0.0


def test_snapshots_of_one_instance_add_their_increase_only() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(10)]), "default", "reviews", 0)
    m.add(snapshot(2, [http(25)]), "default", "reviews", 5)
    assert requests_total(m) == 25


def test_one_label_set_twice_in_a_snapshot_adds_up() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(10), http(5)]), "default", "reviews", 0)
    m.add(snapshot(2, [http(11), http(6)]), "default", "reviews", 5)
    assert requests_total(m) == 17


def test_two_proxies_are_summed() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(10)], proxy="a"), "default", "reviews", 0)
    m.add(snapshot(1, [http(7)], proxy="b"), "default", "reviews", 0)
    assert requests_total(m) == 17


def test_a_restarted_proxy_is_a_counter_reset_and_the_total_never_goes_down() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(100)], instance="old"), "default", "reviews", 0)
    m.add(snapshot(1, [http(3)], instance="new"), "default", "reviews", 5)
    assert requests_total(m) == 103
    m.add(snapshot(2, [http(10)], instance="new"), "default", "reviews", 10)
    assert requests_total(m) == 110
    assert m.stats.resets == 1


def test_a_decrease_within_an_instance_is_a_reset_of_that_series() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(50)]), "default", "reviews", 0)
    m.add(snapshot(2, [http(5)]), "default", "reviews", 5)
    assert requests_total(m) == 55


def test_a_duplicate_or_older_snapshot_is_ignored() -> None:
    m = MetricsMerger()
    m.add(snapshot(2, [http(20)]), "default", "reviews", 0)
    m.add(snapshot(2, [http(20)]), "default", "reviews", 1)
    m.add(snapshot(1, [http(10)]), "default", "reviews", 2)
    assert requests_total(m) == 20
    assert m.stats.duplicates == 2


def test_a_retired_proxy_keeps_its_counts_and_its_return_counts_from_there() -> None:
    m = MetricsMerger(retire_after=60)
    m.add(snapshot(1, [http(40)]), "default", "reviews", 0)
    assert m.retire(30) == 0
    assert m.retire(61) == 1
    assert not m.proxies and requests_total(m) == 40
    m.add(snapshot(9, [http(70)]), "default", "reviews", 100)  # the same instance: its new zero
    assert requests_total(m) == 40
    m.add(snapshot(10, [http(75)]), "default", "reviews", 105)
    assert requests_total(m) == 45


def test_the_reporters_own_namespace_comes_from_the_subject_and_a_payload_claiming_another_is_dropped() -> None:
    m = MetricsMerger()
    with pytest.raises(SnapshotRefused):
        m.add(snapshot(1, [http(1)], namespace="other"), "default", "reviews", 0)
    m.add(snapshot(1, [http(4, destination_workload_namespace="forged")]), "default", "reviews", 0)
    assert requests_total(m) == 4  # the destination reporter's namespace is the subject's: default


def test_one_identity_cannot_reset_another_identitys_proxy() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(30)], proxy="p"), "default", "reviews", 0)
    m.add(snapshot(1, [http(0)], proxy="p", instance="evil"), "default", "attacker", 0)
    m.add(snapshot(2, [http(31)], proxy="p"), "default", "reviews", 5)
    assert requests_total(m) == 31 and m.stats.resets == 0


def test_max_proxies_at_the_bound_and_one_over() -> None:
    m = MetricsMerger(max_proxies=2)
    m.add(snapshot(1, [http(1)], proxy="a"), "default", "reviews", 0)
    m.add(snapshot(1, [http(1)], proxy="b"), "default", "reviews", 0)
    with pytest.raises(SnapshotRefused, match="max_proxies"):
        m.add(snapshot(1, [http(1)], proxy="c"), "default", "reviews", 0)
    m.add(snapshot(2, [http(2)], proxy="a"), "default", "reviews", 0)  # held ones still merge
    assert requests_total(m) == 3 and m.stats.refused_proxies == 1


def test_max_series_at_the_bound_and_one_over() -> None:
    m = MetricsMerger(max_series=2)
    m.add(snapshot(1, [http(1, response_code="200"), http(1, response_code="503")]), "default", "reviews", 0)
    assert len(m.totals) == 2
    m.add(snapshot(2, [http(2, response_code="200"), http(1, response_code="503"), http(1, response_code="404")]),
          "default", "reviews", 0)
    assert len(m.totals) == 2 and m.stats.refused_series == 1
    assert requests_total(m, response_code="200") == 2


def test_label_sets_held_over_all_proxies_at_the_bound_and_one_over() -> None:
    """One identity publishing the same label sets under many proxy ids: max_series bounds the totals, but
    every proxy also remembers its last values; max_held bounds those over all proxies."""
    m = MetricsMerger(max_series=10, max_held=3)
    m.add(snapshot(1, [http(1, response_code="200"), http(1, response_code="503")], proxy="a"), "default", "x", 0)
    m.add(snapshot(1, [http(1, response_code="200")], proxy="b"), "default", "x", 0)
    assert m.held == 3 and m.stats.refused_series == 0  # at the bound
    m.add(snapshot(1, [http(1, response_code="200")], proxy="c"), "default", "x", 0)
    assert m.held == 3 and m.stats.refused_series == 1 and requests_total(m, response_code="200") == 2  # one over
    m.add(snapshot(2, [http(5, response_code="200"), http(1, response_code="503")], proxy="a"), "default", "x", 0)
    assert requests_total(m, response_code="200") == 6  # held ones still merge
    m.add(snapshot(1, [http(1, response_code="200")], proxy="a", instance="i2"), "default", "x", 0)  # a restarts
    assert m.held == 2
    m.retire(10_000.0)
    assert m.held == 0 and not m.proxies
    m.add(snapshot(1, [http(1, response_code="404")], proxy="d", instance="i9"), "default", "x", 10_000.0)
    assert m.held == 1 and requests_total(m, response_code="404") == 1


def test_label_values_at_the_bound_and_one_over() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(1, source_principal="x" * MAX_LABEL),
                       http(1, source_principal="y" * (MAX_LABEL + 1))]), "default", "reviews", 0)
    assert len(m.totals) == 1 and m.stats.invalid_series == 1


def test_a_histogram_without_istios_buckets_or_a_wrong_label_count_is_left_out() -> None:
    bad = http(1)
    bad.duration_ms.counts = bad.duration_ms.counts[:-1]
    short = http(1)
    short.labels = short.labels[:-1]
    m = MetricsMerger()
    m.add(snapshot(1, [bad, short, http(2, response_code="201")]), "default", "reviews", 0)
    assert m.stats.invalid_series == 2 and len(m.totals) == 1


def test_exposition_has_istio_names_labels_and_cumulative_buckets() -> None:
    m = MetricsMerger()
    m.add(snapshot(1, [http(4, duration_ms=7)], tcp=[TcpSeries(labels=tcp_labels(), sent_bytes=10, received_bytes=5,
                                                               opened=2, closed=1)]), "default", "reviews", 0)
    families = {f.name: f for f in text_string_to_metric_families("\n".join(render(m.totals)) + "\n")}
    assert families["istio_requests"].type == "counter"
    sample = families["istio_requests"].samples[0]
    assert sample.value == 4 and sample.labels["destination_service_name"] == "reviews"
    assert sample.labels["reporter"] == "destination" and sample.labels["connection_security_policy"] == "mutual_tls"
    buckets = {s.labels["le"]: s.value for s in families["istio_request_duration_milliseconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets["5"] == 0 and buckets["10"] == 4 and buckets["+Inf"] == 4
    assert families["istio_tcp_sent_bytes"].samples[0].value == 10  # the parser drops _total from the name
    assert families["istio_tcp_connections_opened"].samples[0].value == 2


def test_two_replicas_fed_the_same_messages_serve_identical_metrics() -> None:
    settings = TelemetrySettings(proxy_retire=10)
    messages = [
        (SUBJECT, encoded(snapshot(1, [http(5)], proxy="a"))),
        (SUBJECT, encoded(snapshot(1, [http(3, response_code="503")], proxy="b"))),
        (SUBJECT, b"{not json"),
        (SUBJECT, encoded(snapshot(2, [http(9)], proxy="a"))),
        (SUBJECT, encoded(snapshot(1, [http(2)], proxy="a", instance="restarted"))),
        ("isthmus.telemetry.metrics.default", encoded(snapshot(3, [http(99)], proxy="z"))),
    ]
    one, two = Telemetry(settings), Telemetry(settings)
    for i, (subject, data) in enumerate(messages):
        one.on_metrics(subject, data, 100.0 + i)
        two.on_metrics(subject, data, 500.0 + 3 * i)  # received at other times
        if i == 3:
            two.tick(1000.0)  # one replica retires a proxy the other still holds
    assert one.exposition() == two.exposition()
    assert one.dropped["metrics"] == 2
    assert 'response_code="200"' in one.exposition() and "istio_requests_total{" in one.exposition()
    family = next(f for f in text_string_to_metric_families(one.exposition()) if f.name == "istio_requests")
    assert sorted(s.value for s in family.samples) == [3, 11]


def test_dropped_messages_are_all_counted_and_logged_at_most_once_per_interval(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from services.telemetry import state

    lines: list[dict] = []
    monkeypatch.setattr(state.log, "warning", lambda event, **fields: lines.append(fields))
    t = Telemetry(TelemetrySettings())
    for _ in range(50):
        t.on_metrics(SUBJECT, b"garbage", 0)
    assert t.dropped["metrics"] == 50 and len(lines) == 1
    monkeypatch.setattr(state.time, "monotonic", lambda: 10**9)  # the interval has passed
    t.on_metrics(SUBJECT, b"garbage", 0)
    assert len(lines) == 2 and lines[1]["also_dropped_unlogged"] == 49

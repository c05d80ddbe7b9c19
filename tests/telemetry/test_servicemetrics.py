"""The control-plane services' own metrics, merged into /metrics per replica."""

from __future__ import annotations

import msgspec
import pytest
from prometheus_client import Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from proto.observations import ServiceMetrics
from runtime.metrics import IstioSum, MetricsPublisher, service_registry
from services.telemetry.servicemetrics import ExpositionRefused, ServiceMetricsMerge
from services.telemetry.settings import TelemetrySettings
from services.telemetry.state import Telemetry


def exposition(pushes: int, replica: str) -> ServiceMetrics:
    registry = service_registry()
    IstioSum("pilot_xds_pushes", "Pushes.", ["type"], registry).inc("cds", amount=pushes)
    Counter("isthmus_example", "An ordinary prometheus-client counter.", registry=registry).inc(2)
    Histogram("pilot_proxy_convergence_time", "Convergence.", buckets=(0.1, 0.5), registry=registry).observe(0.2)
    message = MetricsPublisher(None, "pilot", replica, registry).message()  # type: ignore[arg-type]
    return msgspec.json.decode(message, type=ServiceMetrics)


def test_istio_sums_keep_istiods_names_without_total() -> None:
    text = exposition(3, "a").text
    assert 'pilot_xds_pushes{type="cds"} 3.0' in text
    assert "pilot_xds_pushes_total" not in text.replace("# HELP pilot_xds_pushes_total", "").replace(
        "# TYPE pilot_xds_pushes_total", "")


def test_replicas_do_not_collide_and_types_survive() -> None:
    merge = ServiceMetricsMerge()
    merge.add(exposition(3, "pilot-a"), "pilot", 0)
    merge.add(exposition(5, "pilot-b"), "pilot", 0)
    text = "\n".join(merge.render()) + "\n"
    assert "# TYPE pilot_xds_pushes counter" in text
    assert 'pilot_xds_pushes{component="pilot",replica="pilot-a",type="cds"} 3.0' in text
    assert 'pilot_xds_pushes{component="pilot",replica="pilot-b",type="cds"} 5.0' in text
    assert "# TYPE isthmus_example_total counter" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["pilot_proxy_convergence_time"].type == "histogram"
    assert families["isthmus_example"].type == "counter"
    assert any(s.labels.get("le") == "0.5" and s.value == 1 for s in families["pilot_proxy_convergence_time"].samples)


def test_a_payload_naming_another_service_than_its_subject_is_refused() -> None:
    with pytest.raises(ExpositionRefused):
        ServiceMetricsMerge().add(exposition(1, "a"), "ca", 0)


def test_samples_at_the_bound_and_one_over() -> None:
    message = exposition(1, "a")
    count = sum(len(f.samples) for f in text_string_to_metric_families(message.text))
    ServiceMetricsMerge(max_samples=count).add(message, "pilot", 0)
    with pytest.raises(ExpositionRefused, match="samples"):
        ServiceMetricsMerge(max_samples=count - 1).add(message, "pilot", 0)


def test_replicas_at_the_bound_and_one_over_and_a_stale_one_goes() -> None:
    merge = ServiceMetricsMerge(max_replicas=2, stale_after=30)
    merge.add(exposition(1, "a"), "pilot", 0)
    merge.add(exposition(1, "b"), "pilot", 0)
    with pytest.raises(ExpositionRefused, match="max_replicas"):
        merge.add(exposition(1, "c"), "pilot", 0)
    merge.add(exposition(2, "a"), "pilot", 20)
    merge.expire(40)
    assert list(merge.expositions) == [("pilot", "a")]


def test_unreadable_text_is_dropped_and_the_others_stay() -> None:
    t = Telemetry(TelemetrySettings())
    t.on_service_metrics("isthmus.telemetry.services.pilot", msgspec.json.encode(exposition(4, "a")), 0)
    bad = ServiceMetrics(service="pilot", instance="b", time=0, text='x{a="1"} not-a-number\n')
    t.on_service_metrics("isthmus.telemetry.services.pilot", msgspec.json.encode(bad), 0)
    assert t.dropped["service_metrics"] == 1
    assert 'pilot_xds_pushes{component="pilot",replica="a",type="cds"} 4.0' in t.exposition()

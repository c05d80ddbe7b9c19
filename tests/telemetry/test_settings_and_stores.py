"""The telemetry service's settings as read from the environment, and the stores' bounds without sockets."""

from __future__ import annotations

import msgspec
import pytest

from proto.observations import Span, ZipkinEndpoint
from services.telemetry.settings import TelemetrySettings
from services.telemetry.traces import TraceStore, check


def test_defaults_are_the_documented_ones() -> None:
    s = TelemetrySettings.from_env({})
    assert (s.port, s.bind, s.max_body_bytes, s.max_connections) == (20001, "127.0.0.1", 1024 * 1024, 256)
    assert (s.interval, s.history_points, s.max_spans, s.max_traces, s.otlp_endpoint) == (5.0, 720, 100_000, 10_000, "")
    assert s.max_trace_bytes == 256 * 1024 * 1024


def test_every_variable_is_read() -> None:
    s = TelemetrySettings.from_env({"ISTHMUS_DASHBOARD_PORT": "8080", "ISTHMUS_DASHBOARD_BIND": "::1",
                                    "ISTHMUS_TRACE_STORE_MAX_SPANS": "50", "ISTHMUS_METRICS_INTERVAL": "0.5",
                                    "ISTHMUS_OTLP_ENDPOINT": "http://collector:4318/v1/traces"})
    assert (s.port, s.bind, s.max_spans, s.interval) == (8080, "::1", 50, 0.5)
    assert s.otlp_endpoint == "http://collector:4318/v1/traces"


@pytest.mark.parametrize("env,named", [
    ({"ISTHMUS_DASHBOARD_PORT": "70000"}, "ISTHMUS_DASHBOARD_PORT"),
    ({"ISTHMUS_DASHBOARD_PORT": "http"}, "ISTHMUS_DASHBOARD_PORT"),
    ({"ISTHMUS_DASHBOARD_BIND": "localhost"}, "ISTHMUS_DASHBOARD_BIND"),
    ({"ISTHMUS_TRACE_STORE_MAX_SPANS": "0"}, "ISTHMUS_TRACE_STORE_MAX_SPANS"),
    ({"ISTHMUS_METRICS_INTERVAL": "nan"}, "ISTHMUS_METRICS_INTERVAL"),
    ({"ISTHMUS_TELEMETRY_MAX_SERIES": "inf"}, "ISTHMUS_TELEMETRY_MAX_SERIES"),
    ({"ISTHMUS_OTLP_ENDPOINT": "collector:4318"}, "ISTHMUS_OTLP_ENDPOINT"),
])
def test_a_bad_value_is_refused_naming_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        TelemetrySettings.from_env(env)


def span(i: int, trace: int) -> Span:
    return check(Span(trace_id=f"{trace:032x}", id=f"{i:016x}", name="Op", timestamp=i,
                      local_endpoint=ZipkinEndpoint(service_name="Svc")))


def test_spans_at_the_bound_and_one_over_evict_the_oldest_trace_whole() -> None:
    store = TraceStore(max_spans=3, max_traces=100)
    store.add([span(1, 1), span(2, 1), span(3, 2)])
    assert store.spans == 3 and len(store.traces) == 2
    store.add([span(4, 3)])
    assert store.spans == 2 and list(store.traces) == [f"{2:016x}", f"{3:016x}"] and store.evicted == 1
    assert store.services() == ["svc"] and store.span_names("SVC") == ["op"]  # lower case, as Zipkin keeps them


def test_names_disappear_with_the_last_span_holding_them() -> None:
    store = TraceStore(max_spans=1, max_traces=10)
    store.add([span(1, 1)])
    store.add([check(Span(trace_id=f"{2:032x}", id=f"{2:016x}", name="other",
                          local_endpoint=ZipkinEndpoint(service_name="else")))])
    assert store.services() == ["else"] and store.span_names("svc") == []


def test_span_bytes_at_the_bound_and_one_over_evict_the_oldest_trace_whole() -> None:
    """Counts alone bound no memory: one span may carry 128 tags of 8 KiB. The store also bounds the spans' JSON
    bytes (ISTHMUS_TRACE_STORE_MAX_BYTES)."""
    size = len(msgspec.json.encode(span(1, 1)))
    store = TraceStore(max_spans=100, max_traces=100, max_bytes=2 * size)
    store.add([span(1, 1), span(2, 2)])
    assert store.bytes == 2 * size and len(store.traces) == 2 and store.evicted == 0  # at the bound: all kept
    store.add([span(3, 3)])
    assert store.bytes == 2 * size and list(store.traces) == [f"{2:016x}", f"{3:016x}"] and store.evicted == 1
    big = check(Span(trace_id=f"{9:032x}", id=f"{9:016x}", tags={f"t{i}": "v" * 8192 for i in range(128)}))
    assert len(msgspec.json.encode(big)) > 1_000_000  # within every per-span bound
    store.add([big])
    assert store.bytes <= 2 * size and f"{9:016x}" not in store.traces  # larger than the whole bound: not held


def test_an_endpoint_address_that_is_not_one_is_left_out_as_zipkin_does() -> None:
    endpoint = ZipkinEndpoint(service_name="a", ipv4="not-an-ip", ipv6="x" * 10_000, port=80)
    checked = check(Span(trace_id="a" * 32, id="b" * 16, local_endpoint=endpoint,
                         remote_endpoint=ZipkinEndpoint(ipv4="10.0.0.1", ipv6="::1")))
    assert checked.local_endpoint == ZipkinEndpoint(service_name="a", port=80)
    assert checked.remote_endpoint == ZipkinEndpoint(ipv4="10.0.0.1", ipv6="::1")
    swapped = check(Span(trace_id="a" * 32, id="b" * 16, local_endpoint=ZipkinEndpoint(ipv4="::1", ipv6="10.0.0.1")))
    assert swapped.local_endpoint == ZipkinEndpoint()

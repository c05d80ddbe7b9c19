"""The telemetry service's settings as read from the environment, and the stores' bounds without sockets."""

from __future__ import annotations

import msgspec
import pytest

from proto.observations import AccessLogBatch, AccessLogEntry, Span, ZipkinEndpoint
from services.telemetry.settings import TelemetrySettings
from services.telemetry.logs import LogStore
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


def test_access_log_bytes_at_the_bound_and_one_over_drop_the_oldest_of_the_least_recent_service() -> None:
    """The counts alone allow 1000 services x 1000 entries of 16 KiB; the store also bounds the entries' bytes
    (ISTHMUS_TELEMETRY_LOG_MAX_BYTES)."""
    def entry(i: int) -> AccessLogEntry:
        return AccessLogEntry(start_time=f"2026-11-30T12:00:{i:02d}.000Z", path="/p" + "x" * 1000)

    size = len(msgspec.json.encode(entry(1)))
    store = LogStore(per_service=100, max_services=100, max_bytes=3 * size)
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="a", entries=[entry(1), entry(2)]), "ns")
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="b", entries=[entry(3)]), "ns")
    assert store.bytes == 3 * size and len(store.recent(limit=10)) == 3  # at the bound: all kept
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="b", entries=[entry(4)]), "ns")
    assert store.bytes == 3 * size
    assert [e.start_time[-7:-5] for e in store.recent(limit=10)] == ["04", "03", "02"]  # a's oldest went
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="b", entries=[entry(5), entry(6)]), "ns")
    assert list(store.services) == [("ns", "b")] and store.bytes == 3 * size  # a emptied: gone whole
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="b", entries=[entry(i) for i in range(7, 12)]), "ns")
    assert store.bytes == 3 * size and len(store.services[("ns", "b")]) == 3


def test_access_log_entries_per_service_still_keep_the_newest() -> None:
    store = LogStore(per_service=2, max_services=1)
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="a",
                             entries=[AccessLogEntry(start_time=str(i)) for i in range(5)]), "ns")
    assert [e.start_time for e in store.recent(limit=10)] == ["4", "3"]
    assert store.bytes == sum(len(msgspec.json.encode(e)) for e in store.services[("ns", "a")])
    store.add(AccessLogBatch(proxy_id="p", namespace="ns", service="b", entries=[AccessLogEntry(start_time="9")]), "ns")
    assert list(store.services) == [("ns", "b")] and store.bytes == len(msgspec.json.encode(AccessLogEntry(start_time="9")))

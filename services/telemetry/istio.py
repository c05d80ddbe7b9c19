"""Istio's standard metrics as the telemetry service serves them: names, buckets, and the flat vectors the
merge keeps per label set (istio.io/latest/docs/reference/config/metrics/).

A merged HTTP series is one vector of floats: [requests, duration buckets..., duration sum, request-bytes
buckets..., sum, response-bytes buckets..., sum] (buckets not cumulative, the last one +Inf, as the proxies
send them: proto.observations.Histogram). A TCP series: [sent bytes, received bytes, opened, closed]. Adding,
comparing and subtracting vectors is all the merge and the history need.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from proto.observations import HTTP_LABELS, TCP_LABELS, HttpSeries, TcpSeries

# Istio's default histogram buckets (Envoy's default histogram_bucket_settings, which Istio's stats keep for
# istio_request_duration_milliseconds and the byte-size histograms); a proxy's histograms must use them.
BUCKETS: tuple[float, ...] = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
                              600000, 1800000, 3600000)
NB = len(BUCKETS) + 1  # counts per histogram (+Inf last)
HIST = NB + 1  # a histogram's slots in a vector: counts and the sum

HTTP = "http"
TCP = "tcp"
HTTP_WIDTH = 1 + 3 * HIST
TCP_WIDTH = 4
HISTOGRAMS = (("istio_request_duration_milliseconds", 1), ("istio_request_bytes", 1 + HIST),
              ("istio_response_bytes", 1 + 2 * HIST))
TCP_COUNTERS = ("istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total", "istio_tcp_connections_opened_total",
                "istio_tcp_connections_closed_total")
HELP = {
    "istio_requests_total": "Requests processed by the mesh's sidecars (Istio standard metric).",
    "istio_request_duration_milliseconds": "Request duration in milliseconds (Istio standard metric).",
    "istio_request_bytes": "Request body size in bytes (Istio standard metric).",
    "istio_response_bytes": "Response body size in bytes (Istio standard metric).",
    "istio_tcp_sent_bytes_total": "Bytes sent on TCP connections (Istio standard metric).",
    "istio_tcp_received_bytes_total": "Bytes received on TCP connections (Istio standard metric).",
    "istio_tcp_connections_opened_total": "TCP connections opened (Istio standard metric).",
    "istio_tcp_connections_closed_total": "TCP connections closed (Istio standard metric).",
}
LABEL_INDEX = {name: i for i, name in enumerate(HTTP_LABELS)}
TCP_LABEL_INDEX = {name: i for i, name in enumerate(TCP_LABELS)}

Key = tuple[str, tuple[str, ...]]  # (HTTP or TCP, label values in HTTP_LABELS / TCP_LABELS order)
Vector = list[float]


def http_vector(series: HttpSeries) -> Vector | None:
    """The series as a vector; None when a histogram does not have Istio's buckets or a value is negative."""
    vector: Vector = [float(series.requests)]
    for histogram in (series.duration_ms, series.request_bytes, series.response_bytes):
        if len(histogram.counts) != NB:
            return None
        vector.extend(float(c) for c in histogram.counts)
        vector.append(float(histogram.sum))
    if not all(math.isfinite(v) and v >= 0 for v in vector):
        return None
    return vector


def tcp_vector(series: TcpSeries) -> Vector | None:
    vector = [float(series.sent_bytes), float(series.received_bytes), float(series.opened), float(series.closed)]
    return vector if all(math.isfinite(v) and v >= 0 for v in vector) else None


def escape(value: str) -> str:
    """A label value in Prometheus' text format (backslash, double quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value or bound as Prometheus writes it: integers without a fraction."""
    if value == math.inf:
        return "+Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


LE = tuple(number(float(b)) for b in BUCKETS) + ("+Inf",)


def label_text(names: tuple[str, ...], values: Iterable[str]) -> str:
    return ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values))


def render(totals: dict[Key, Vector]) -> Iterator[str]:
    """The Istio families in Prometheus text format 0.0.4, series sorted by labels (replicas that merged the
    same snapshots write the same bytes)."""
    http = sorted((labels, v) for (kind, labels), v in totals.items() if kind == HTTP)
    tcp = sorted((labels, v) for (kind, labels), v in totals.items() if kind == TCP)
    if http:
        yield "# HELP istio_requests_total " + HELP["istio_requests_total"]
        yield "# TYPE istio_requests_total counter"
        for labels, v in http:
            yield f"istio_requests_total{{{label_text(HTTP_LABELS, labels)}}} {number(v[0])}"
        for name, start in HISTOGRAMS:
            yield f"# HELP {name} {HELP[name]}"
            yield f"# TYPE {name} histogram"
            for labels, v in http:
                base = label_text(HTTP_LABELS, labels)
                cumulative = 0.0
                for i in range(NB):
                    cumulative += v[start + i]
                    yield f'{name}_bucket{{{base},le="{LE[i]}"}} {number(cumulative)}'
                yield f"{name}_sum{{{base}}} {number(v[start + NB])}"
                yield f"{name}_count{{{base}}} {number(cumulative)}"
    if tcp:
        for i, name in enumerate(TCP_COUNTERS):
            yield f"# HELP {name} {HELP[name]}"
            yield f"# TYPE {name} counter"
            for labels, v in tcp:
                yield f"{name}{{{label_text(TCP_LABELS, labels)}}} {number(v[i])}"

"""The sidecar's metrics as others read them: Prometheus text for the admin port's /stats/prometheus, and the
cumulative proto.observations.MetricsSnapshot published on the bus (proxy/telemetry/publisher.py).

    SidecarMetrics(http=[...], tcp=[...])   every recorder of one sidecar
        .prometheus() -> bytes              rendered by prometheus_client (a Collector, generate_latest)
        .snapshot(...) -> MetricsSnapshot   the same numbers as bus messages

Both read the recorders as they are at that moment (after `before_read` hooks have brought open TCP
connections' bytes up to date), so scrape and snapshot agree. Formatting happens here only, never per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from proto.observations import HTTP_LABELS, TCP_LABELS, Histogram, HttpSeries, MetricsSnapshot, TcpSeries
from proxy.telemetry.metrics import BUCKETS, HttpRecorder, TcpRecorder

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # prometheus_client's CONTENT_TYPE_LATEST for 0.0.4
_LE = [floatToGoString(bound) for bound in BUCKETS] + ["+Inf"]


class SidecarMetrics:
    def __init__(self, http: list[HttpRecorder], tcp: list[TcpRecorder]) -> None:
        self.http = http
        self.tcp = tcp
        # called before every read: bring what is still open (TCP connections' bytes) into the counts
        self.before_read: list[Callable[[], None]] = []
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))

    def refresh(self) -> None:
        for hook in self.before_read:
            hook()

    def prometheus(self) -> bytes:
        """Prometheus text format 0.0.4 of every series (CONTENT_TYPE)."""
        self.refresh()
        return generate_latest(self._registry)

    def snapshot(self, proxy_id: str, instance: str, namespace: str, seq: int) -> MetricsSnapshot:
        """Every series, cumulative since this process started."""
        self.refresh()
        http = [HttpSeries(labels=list(s.labels), requests=s.requests,
                           duration_ms=Histogram(counts=list(s.duration), sum=s.duration_sum),
                           request_bytes=Histogram(counts=list(s.request_bytes), sum=float(s.request_bytes_sum)),
                           response_bytes=Histogram(counts=list(s.response_bytes), sum=float(s.response_bytes_sum)))
                for recorder in self.http for s in recorder.all()]
        tcp = [TcpSeries(labels=list(s.labels), sent_bytes=s.sent, received_bytes=s.received, opened=s.opened,
                         closed=s.closed)
               for recorder in self.tcp for s in recorder.all()]
        return MetricsSnapshot(proxy_id=proxy_id, instance=instance, namespace=namespace, seq=seq, time=time.time(),
                               http=http, tcp=tcp)


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as prometheus_client's cumulative (le, count) pairs, +Inf last."""
    total = 0
    pairs = []
    for le, count in zip(_LE, counts):
        total += count
        pairs.append((le, total))
    return pairs


class _Collector:
    """A prometheus_client custom collector over a SidecarMetrics (read when scraped)."""

    def __init__(self, metrics: SidecarMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        http_labels, tcp_labels = list(HTTP_LABELS), list(TCP_LABELS)
        requests = CounterMetricFamily("istio_requests_total", "Requests handled by the sidecar (Istio's standard "
                                       "metric)", labels=http_labels)
        duration = HistogramMetricFamily("istio_request_duration_milliseconds", "Request duration in milliseconds",
                                         labels=http_labels)
        request_bytes = HistogramMetricFamily("istio_request_bytes", "Request body size in bytes", labels=http_labels)
        response_bytes = HistogramMetricFamily("istio_response_bytes", "Response body size in bytes",
                                               labels=http_labels)
        for recorder in self.metrics.http:
            for s in recorder.all():
                values = list(s.labels)
                requests.add_metric(values, s.requests)
                duration.add_metric(values, _buckets(s.duration), s.duration_sum)
                request_bytes.add_metric(values, _buckets(s.request_bytes), s.request_bytes_sum)
                response_bytes.add_metric(values, _buckets(s.response_bytes), s.response_bytes_sum)
        sent = CounterMetricFamily("istio_tcp_sent_bytes_total", "Bytes sent to the downstream over TCP",
                                   labels=tcp_labels)
        received = CounterMetricFamily("istio_tcp_received_bytes_total", "Bytes received from the downstream over TCP",
                                       labels=tcp_labels)
        opened = CounterMetricFamily("istio_tcp_connections_opened_total", "TCP connections opened", labels=tcp_labels)
        closed = CounterMetricFamily("istio_tcp_connections_closed_total", "TCP connections closed", labels=tcp_labels)
        for tcp in self.metrics.tcp:
            for t in tcp.all():
                values = list(t.labels)
                sent.add_metric(values, t.sent)
                received.add_metric(values, t.received)
                opened.add_metric(values, t.opened)
                closed.add_metric(values, t.closed)
        overflow = CounterMetricFamily("isthmus_metrics_series_overflow_total",
                                       "Recordings folded into the overflow series: the listener's label sets were at "
                                       "ISTHMUS_METRICS_MAX_SERIES", labels=["listener"])
        for recorder in (*self.metrics.http, *self.metrics.tcp):
            overflow.add_metric([recorder.name], recorder.overflowed)
        yield from (requests, duration, request_bytes, response_bytes, sent, received, opened, closed, overflow)

"""The sidecar's metrics as others read them: Prometheus text for the admin port's /stats/prometheus, and the
cumulative proto.observations.MetricsSnapshot published on the bus (proxy/telemetry/publisher.py).

    SidecarMetrics(http=[...], tcp=[...])   every recorder of one sidecar
        .prometheus() -> bytes              rendered by prometheus_client (a Collector, generate_latest)
        await .prometheus_off_loop()        the same, rendered in a worker thread (the admin port's scrape)
        .snapshot(...) -> MetricsSnapshot   the same numbers as bus messages

Both read the recorders as they are at that moment (after `before_read` hooks have brought open TCP
connections' bytes up to date), so scrape and snapshot agree. Formatting happens here only, never per request.

A scrape renders from a copy (a MetricsSnapshot taken on the loop) in a worker thread, one scrape at a time:
with the series at their bound (which any caller can reach by forging peer metadata) the text is ~50 MB and
~2 s of CPU, and rendered on the loop it stalled every request of the sidecar that long (Envoy renders its
admin pages off its worker threads). The thread still takes the GIL, but hands it back every switch interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from proto.observations import HTTP_LABELS, TCP_LABELS, Histogram, HttpSeries, MetricsSnapshot, TcpSeries
from proxy.telemetry.metrics import BUCKETS, HttpRecorder, TcpRecorder

if TYPE_CHECKING:
    from prometheus_client.core import Metric

# prometheus_client (with the email, wsgiref, html and http.server modules it imports: ~2 MB of RSS) is loaded at
# the first render, a scrape or a test, not by every sidecar at start (tests/proxy/test_sidecar_imports.py)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # prometheus_client's CONTENT_TYPE_LATEST for 0.0.4
_LE: list[str] = []  # the buckets' `le` labels as prometheus_client writes them, +Inf last (made at the first render)


class SidecarMetrics:
    def __init__(self, http: list[HttpRecorder], tcp: list[TcpRecorder]) -> None:
        self.http = http
        self.tcp = tcp
        # called before every read: bring what is still open (TCP connections' bytes) into the counts
        self.before_read: list[Callable[[], None]] = []
        self._render_lock = asyncio.Lock()  # one scrape rendered at a time: each holds its whole text

    def refresh(self) -> None:
        for hook in self.before_read:
            hook()

    def prometheus(self) -> bytes:
        """Prometheus text format 0.0.4 of every series (CONTENT_TYPE)."""
        return render(self.snapshot("", "", "", 0), self._overflowed())

    async def prometheus_off_loop(self) -> bytes:
        """prometheus(), with the copy taken on the loop and the text rendered in a worker thread."""
        async with self._render_lock:
            return await asyncio.to_thread(render, self.snapshot("", "", "", 0), self._overflowed())

    def _overflowed(self) -> list[tuple[str, int]]:
        return [(recorder.name, recorder.overflowed) for recorder in (*self.http, *self.tcp)]

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


def render(snapshot: MetricsSnapshot, overflowed: list[tuple[str, int]]) -> bytes:
    """Prometheus text format 0.0.4 of a snapshot (prometheus_client's generate_latest; safe in a thread: the
    snapshot is a copy nobody else changes)."""
    from prometheus_client import generate_latest
    from prometheus_client.utils import floatToGoString

    if not _LE:  # two threads may both fill it: with the same values, and the assignment is atomic
        _LE[:] = [floatToGoString(bound) for bound in BUCKETS] + ["+Inf"]
    return generate_latest(_Collector(snapshot, overflowed))  # type: ignore[arg-type]  # it only calls .collect()


class _Collector:
    """A prometheus_client custom collector over a copy of a sidecar's metrics."""

    def __init__(self, snapshot: MetricsSnapshot, overflowed: list[tuple[str, int]]) -> None:
        self.snapshot = snapshot
        self.overflowed = overflowed

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        http_labels, tcp_labels = list(HTTP_LABELS), list(TCP_LABELS)
        requests = CounterMetricFamily("istio_requests_total", "Requests handled by the sidecar (Istio's standard "
                                       "metric)", labels=http_labels)
        duration = HistogramMetricFamily("istio_request_duration_milliseconds", "Request duration in milliseconds",
                                         labels=http_labels)
        request_bytes = HistogramMetricFamily("istio_request_bytes", "Request body size in bytes", labels=http_labels)
        response_bytes = HistogramMetricFamily("istio_response_bytes", "Response body size in bytes",
                                               labels=http_labels)
        for s in self.snapshot.http:
            values = s.labels
            requests.add_metric(values, s.requests)
            duration.add_metric(values, _buckets(s.duration_ms.counts), s.duration_ms.sum)
            request_bytes.add_metric(values, _buckets(s.request_bytes.counts), s.request_bytes.sum)
            response_bytes.add_metric(values, _buckets(s.response_bytes.counts), s.response_bytes.sum)
        sent = CounterMetricFamily("istio_tcp_sent_bytes_total", "Bytes sent to the downstream over TCP",
                                   labels=tcp_labels)
        received = CounterMetricFamily("istio_tcp_received_bytes_total", "Bytes received from the downstream over TCP",
                                       labels=tcp_labels)
        opened = CounterMetricFamily("istio_tcp_connections_opened_total", "TCP connections opened", labels=tcp_labels)
        closed = CounterMetricFamily("istio_tcp_connections_closed_total", "TCP connections closed", labels=tcp_labels)
        for t in self.snapshot.tcp:
            values = t.labels
            sent.add_metric(values, t.sent_bytes)
            received.add_metric(values, t.received_bytes)
            opened.add_metric(values, t.opened)
            closed.add_metric(values, t.closed)
        overflow = CounterMetricFamily("isthmus_metrics_series_overflow_total",
                                       "Recordings folded into the overflow series: the listener's label sets were at "
                                       "ISTHMUS_METRICS_MAX_SERIES", labels=["listener"])
        for name, count in self.overflowed:
            overflow.add_metric([name], count)
        yield from (requests, duration, request_bytes, response_bytes, sent, received, opened, closed, overflow)

"""What one telemetry replica holds, and how each bus message changes it (no sockets: tests feed it bytes).

    Telemetry
    ├── merger      MetricsMerger: proxies' snapshots -> Istio series (merge.py)
    ├── services    ServiceMetricsMerge: the control-plane services' own expositions (servicemetrics.py)
    ├── history     History: a point per interval for /api/graph and /api/series (history.py)
    ├── traces      TraceStore: recent spans, Zipkin's queries (traces.py)
    ├── logs        LogStore: recent access-log entries per service (logs.py)
    └── otlp        OtlpExporter or None: spans forwarded to a collector (otlp.py)

Every message is read from the subject it came on: the identity of a proxy subject
(`<base>.<namespace>.<service account>`, which nats-server lets only that identity publish) is the source of
truth for its namespace; a message that cannot be read or contradicts its subject is logged and dropped,
never raised into the bus client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proto import subjects
from proto.observations import AccessLogBatch, MetricsSnapshot, ServiceMetrics, SpanBatch
from runtime.log import get_logger
from services.telemetry.history import History
from services.telemetry.istio import render
from services.telemetry.logs import BatchRefused, LogStore
from services.telemetry.merge import MetricsMerger, SnapshotRefused
from services.telemetry.otlp import OtlpExporter
from services.telemetry.servicemetrics import ExpositionRefused, ServiceMetricsMerge
from services.telemetry.settings import TelemetrySettings
from services.telemetry.traces import SpanRefused, TraceStore, check

log = get_logger("telemetry")
LOG_EVERY = 10.0  # seconds between log lines about dropped messages of one kind
_snapshot = msgspec.json.Decoder(MetricsSnapshot)
_spans = msgspec.json.Decoder(SpanBatch)
_logs = msgspec.json.Decoder(AccessLogBatch)
_service_metrics = msgspec.json.Decoder(ServiceMetrics)


class Telemetry:
    def __init__(self, settings: TelemetrySettings, otlp: OtlpExporter | None = None) -> None:
        self.settings = settings
        self.merger = MetricsMerger(settings.max_proxies, settings.max_series, settings.proxy_retire,
                                    settings.max_proxy_series)
        self.services = ServiceMetricsMerge(stale_after=max(60.0, 6 * settings.interval))
        self.history = History(settings.history_points)
        self.traces = TraceStore(settings.max_spans, settings.max_traces, settings.max_trace_bytes)
        self.logs = LogStore(settings.logs_per_service, settings.log_services, settings.log_max_bytes)
        self.otlp = otlp
        self.dropped: dict[str, int] = {"metrics": 0, "spans": 0, "logs": 0, "service_metrics": 0}
        self.spans_received = 0
        self._logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def _drop(self, kind: str, subject: str, error: object) -> None:
        """Count a dropped message; log it, at most one line per kind every LOG_EVERY seconds (a proxy sending
        garbage in a loop must not fill the log), with how many went unlogged since."""
        self.dropped[kind] += 1
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return
        self._logged[kind] = now
        log.warning("telemetry message dropped", subject=subject[:300], error=str(error)[:300],
                    also_dropped_unlogged=self._unlogged.pop(kind, 0))

    def on_metrics(self, subject: str, data: bytes, now: float) -> None:
        identity = subjects.identity_of(subject, subjects.TELEMETRY_METRICS)
        try:
            if identity is None:
                raise SnapshotRefused("not published below an identity (<namespace>.<service account>)")
            self.merger.add(_snapshot.decode(data), *identity, now)
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            self._drop("metrics", subject, exc)

    def on_spans(self, subject: str, data: bytes) -> list:
        """Checked spans of a batch (kept; offered to the OTLP export); the batch goes whole if one is bad."""
        try:
            if subjects.identity_of(subject, subjects.TELEMETRY_SPANS) is None:
                raise SpanRefused("not published below an identity (<namespace>.<service account>)")
            spans = [check(span) for span in _spans.decode(data).spans]
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            self._drop("spans", subject, exc)
            return []
        self.add_spans(spans)
        return spans

    def add_spans(self, spans: list) -> None:
        self.spans_received += len(spans)
        self.traces.add(spans)
        if self.otlp is not None:
            self.otlp.offer(spans)

    def on_logs(self, subject: str, data: bytes) -> None:
        identity = subjects.identity_of(subject, subjects.TELEMETRY_LOGS)
        try:
            if identity is None:
                raise BatchRefused("not published below an identity (<namespace>.<service account>)")
            self.logs.add(_logs.decode(data), identity[0])
        except (msgspec.DecodeError, RecursionError, ValueError) as exc:
            self._drop("logs", subject, exc)

    def on_service_metrics(self, subject: str, data: bytes, now: float) -> None:
        service = subject[len(subjects.TELEMETRY_SERVICE_METRICS) + 1:]
        try:
            self.services.add(_service_metrics.decode(data), service, now)
        except (msgspec.DecodeError, RecursionError, ValueError, ExpositionRefused) as exc:
            self._drop("service_metrics", subject, exc)

    def tick(self, now: float) -> None:
        """Once per interval: a history point, retire silent proxies, drop stale service expositions."""
        self.history.record(now, self.merger.totals)
        self.merger.retire(now)
        self.services.expire(now)

    def exposition_lines(self) -> Iterator[str]:
        """/metrics line by line (no newlines): the merged Istio series, then every service replica's own
        metrics. A generator, so the HTTP handler can stream a large exposition and yield to the loop."""
        yield from render(self.merger.totals)
        yield from self.services.render()

    def exposition(self) -> str:
        return "\n".join(self.exposition_lines()) + "\n"


class TelemetryCollector(Collector):
    """The replica's own figures for prometheus-client (published like every service's own metrics)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.t.merger.stats
        snapshots = CounterMetricFamily("isthmus_telemetry_snapshots", "Proxy metric snapshots merged.")
        snapshots.add_metric([], stats.snapshots)
        resets = CounterMetricFamily("isthmus_telemetry_counter_resets", "Counter resets seen (restarted proxies).")
        resets.add_metric([], stats.resets)
        refused = CounterMetricFamily("isthmus_telemetry_refused", "What the merge left out, by reason.",
                                      labels=["reason"])
        for reason in ("refused_proxies", "refused_series", "invalid_series", "duplicates"):
            refused.add_metric([reason], getattr(stats, reason))
        dropped = CounterMetricFamily("isthmus_telemetry_dropped_messages", "Bus messages dropped, by kind.",
                                      labels=["kind"])
        for kind, count in sorted(self.t.dropped.items()):
            dropped.add_metric([kind], count)
        held = GaugeMetricFamily("isthmus_telemetry_held", "What this replica holds now.", labels=["what"])
        for what, value in (("proxies", len(self.t.merger.proxies)), ("series", len(self.t.merger.totals)),
                            ("spans", self.t.traces.spans), ("span_bytes", self.t.traces.bytes), ("traces", len(self.t.traces.traces)),
                            ("log_services", len(self.t.logs.services)), ("log_bytes", self.t.logs.bytes)):
            held.add_metric([what], value)
        spans = CounterMetricFamily("isthmus_telemetry_spans_received", "Spans received (bus and POST).")
        spans.add_metric([], self.t.spans_received)
        evicted = CounterMetricFamily("isthmus_telemetry_traces_evicted", "Traces evicted by the store's bounds.")
        evicted.add_metric([], self.t.traces.evicted)
        yield from (snapshots, resets, refused, dropped, held, spans, evicted)
        if self.t.otlp is not None:
            otlp = CounterMetricFamily("isthmus_telemetry_otlp_spans", "Spans sent over OTLP, by outcome.",
                                       labels=["outcome"])
            otlp.add_metric(["exported"], self.t.otlp.exported)
            otlp.add_metric(["dropped"], self.t.otlp.dropped)
            yield otlp

"""A control-plane service's own metrics (prometheus-client), published on the bus for the telemetry service.

Every ServiceProcess has `self.metrics`, a CollectorRegistry with the process collector
(process_resident_memory_bytes, ...). MetricsPublisher sends its exposition as
proto.observations.ServiceMetrics on `TELEMETRY_SERVICE_METRICS.<service>` every ISTHMUS_METRICS_INTERVAL
seconds (default 5); the telemetry service merges every replica's into its /metrics with labels `component`
and `replica`. A publish that fails (bus away, too large) is logged at debug and tried again next interval.

IstioSum is Istio's monitoring.NewSum as istiod exposes it: a counter named without the `_total` suffix
(istiod's Prometheus exporter runs WithoutCounterSuffixes), so `pilot_xds_pushes` and
`citadel_server_csr_count` are the names Istio's dashboards query.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator, Sequence

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from proto.observations import ServiceMetrics
from proto.subjects import service_metrics_subject
from runtime.bus import Bus, encode
from runtime.log import get_logger

prometheus_client.disable_created_metrics()  # no *_created series: they double the exposition for nothing
log = get_logger("metrics")
DEFAULT_INTERVAL = 5.0


def interval_from_env() -> float:
    """ISTHMUS_METRICS_INTERVAL (seconds, > 0), else 5; ValueError naming the variable."""
    text = os.environ.get("ISTHMUS_METRICS_INTERVAL", "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86_400:
        raise ValueError(f"ISTHMUS_METRICS_INTERVAL is {text[:40]!r}: give seconds (> 0)")
    return value


def service_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


class IstioSum(Collector):
    """A counter exposed as `<name>{labels} value` (no `_total`), label values given in `labelnames` order."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        with self._lock:
            self._values[labelvalues] = self._values.get(labelvalues, 0.0) + amount

    def value(self, *labelvalues: str) -> float:
        return self._values.get(labelvalues, 0.0)

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        with self._lock:
            for labelvalues, value in sorted(self._values.items()):
                metric.add_sample(self.name, dict(zip(self.labelnames, labelvalues)), value)
        yield metric

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, "counter")


class MetricsPublisher:
    def __init__(self, bus: Bus, service: str, instance: str, registry: CollectorRegistry,
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.bus, self.service, self.instance, self.registry = bus, service, instance, registry
        self.interval = interval
        self.subject = service_metrics_subject(service)

    def message(self) -> bytes:
        text = generate_latest(self.registry).decode()
        return encode(ServiceMetrics(service=self.service, instance=self.instance, time=time.time(), text=text))

    async def publish(self) -> None:
        try:
            await self.bus.publish(self.subject, self.message())
        except Exception as exc:  # bus away, closed or payload too large: next interval tries again
            log.debug("service metrics not published", subject=self.subject, error=str(exc))

    async def run(self) -> None:
        while True:
            await self.publish()
            await asyncio.sleep(self.interval)

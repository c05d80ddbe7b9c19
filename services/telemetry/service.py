"""Telemetry: merges the proxies' metric snapshots into Istio-named Prometheus series, keeps recent traces and
access logs, and serves them over HTTP (`/metrics`, Zipkin's v2 API, the dashboard and its JSON API).

On the bus (no queue group: every replica receives everything, so replicas answer alike):

    isthmus.telemetry.metrics.<ns>.<sa>   MetricsSnapshot   -> merge.py
    isthmus.telemetry.spans.<ns>.<sa>     SpanBatch         -> traces.py (and OTLP export, otlp.py)
    isthmus.telemetry.logs.<ns>.<sa>      AccessLogBatch    -> logs.py
    isthmus.telemetry.services.<service>  ServiceMetrics    -> servicemetrics.py
    isthmus.xds.status (request)          ProxyStatusReply  <- pilot, for /api/proxies

Settings: services/telemetry/settings.py; docs/telemetry-service.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from typing import Any, ClassVar

from nats.aio.msg import Msg

from proto import subjects
from proto.xds import ProxyStatusRequest
from runtime.bus import encode
from runtime.service import ServiceProcess
from services.telemetry.http import HttpServer
from services.telemetry.otlp import OtlpExporter
from services.telemetry.settings import TelemetrySettings
from services.telemetry.state import Telemetry, TelemetryCollector

STATUS_TIMEOUT = 5.0  # seconds /api/proxies waits for pilot


class TelemetryService(ServiceProcess):
    name: ClassVar[str] = "telemetry"
    uses_store: ClassVar[bool] = False

    async def start(self) -> None:
        try:
            settings = TelemetrySettings.from_env()
        except ValueError as exc:
            self.log.error("the telemetry service cannot start", error=str(exc))
            raise SystemExit(1) from None
        otlp = None
        if settings.otlp_endpoint:
            otlp = OtlpExporter(settings.otlp_endpoint, settings.otlp_max_queue, settings.otlp_batch,
                                settings.otlp_timeout)
            self.spawn(otlp.run())
        self.telemetry = t = Telemetry(settings, otlp)
        self.metrics.register(TelemetryCollector(t))
        t.history.record(time.time(), t.merger.totals)  # the zero the first rates are measured from
        self.subscriptions: list[Any] = []
        for subject, handle in (
            (f"{subjects.TELEMETRY_METRICS}.>", lambda m: t.on_metrics(m.subject, m.data, time.time())),
            (f"{subjects.TELEMETRY_SPANS}.>", lambda m: t.on_spans(m.subject, m.data)),
            (f"{subjects.TELEMETRY_LOGS}.>", lambda m: t.on_logs(m.subject, m.data)),
            (f"{subjects.TELEMETRY_SERVICE_METRICS}.*", lambda m: t.on_service_metrics(m.subject, m.data, time.time())),
        ):
            self.subscriptions.append(await self.bus.client.subscribe(subject, cb=self._safe(handle)))
        self.http = HttpServer(t, self._proxy_status, lambda: self.bus.connected)
        try:
            await self.http.start()
        except OSError as exc:
            self.log.error("the telemetry service cannot listen", address=f"{settings.bind}:{settings.port}",
                           error=str(exc), fix="free the port or set --dashboard-port / ISTHMUS_DASHBOARD_PORT")
            raise SystemExit(1) from None
        self.log.info("http listening", url=f"http://{_host(settings.bind)}:{self.http.port}/", bind=settings.bind)
        if not ipaddress.ip_address(settings.bind).is_loopback:
            self.log.warning("the telemetry port is reachable from other hosts: anyone who reaches it reads the "
                             "mesh's metrics, traces and access logs (docs/telemetry-service.md)", bind=settings.bind)
        self.spawn(self._ticks(settings.interval))

    async def stop(self) -> None:
        await self.http.stop()

    def _safe(self, handle: Callable[[Msg], object]) -> Callable[[Msg], Any]:
        async def on_msg(msg: Msg) -> None:
            try:
                handle(msg)
            except Exception:  # our bug: log it, keep receiving
                self.log.exception("telemetry message failed", subject=msg.subject[:300])
        return on_msg

    async def _ticks(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.telemetry.tick(time.time())

    async def _proxy_status(self) -> bytes:
        return await self.bus.request(subjects.XDS_STATUS, encode(ProxyStatusRequest()), timeout=STATUS_TIMEOUT)


def _host(bind: str) -> str:
    if bind in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{bind}]" if ":" in bind else bind

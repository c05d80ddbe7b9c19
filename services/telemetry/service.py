"""Telemetry: merges the proxies' metric snapshots into Istio-named Prometheus series.

For now it joins the bus and reports ready; the metrics, traces and dashboard come with the
observability issue.
"""

from __future__ import annotations

from typing import ClassVar

from runtime.service import ServiceProcess


class TelemetryService(ServiceProcess):
    name: ClassVar[str] = "telemetry"
    uses_store: ClassVar[bool] = False

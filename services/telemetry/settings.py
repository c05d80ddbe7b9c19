"""The telemetry service's own settings, read once from the environment (docs/telemetry-service.md).

| env var                               | default   | meaning                                                |
| ------------------------------------- | --------- | ------------------------------------------------------ |
| ISTHMUS_DASHBOARD_PORT                | 20001     | the HTTP port (Kiali's); `isthmus up --dashboard-port` |
| ISTHMUS_DASHBOARD_BIND                | 127.0.0.1 | the address it listens on (0.0.0.0: every interface)   |
| ISTHMUS_TELEMETRY_MAX_BODY_BYTES      | 1048576   | a POST /api/v2/spans body (413 past it)                |
| ISTHMUS_TELEMETRY_MAX_POST_SPANS      | 1000      | spans in one POST (413 past it)                        |
| ISTHMUS_TELEMETRY_MAX_CONNECTIONS     | 256       | open HTTP connections (more are closed at once)        |
| ISTHMUS_TELEMETRY_IDLE_TIMEOUT        | 15        | seconds a connection may go without a request starting (a slow head, an idle keep-alive) |
| ISTHMUS_METRICS_INTERVAL              | 5         | seconds between history points and service publishes  |
| ISTHMUS_TELEMETRY_HISTORY_POINTS      | 720       | history points kept (one hour at 5 s)                  |
| ISTHMUS_TELEMETRY_MAX_PROXIES         | 10000     | proxies whose snapshots are merged                     |
| ISTHMUS_TELEMETRY_MAX_SERIES          | 100000    | merged Istio label sets                                |
| ISTHMUS_TELEMETRY_MAX_PROXY_SERIES    | 1000000   | label sets remembered over all proxies                 |
| ISTHMUS_TELEMETRY_PROXY_RETIRE        | 600       | seconds a silent proxy's state is kept                 |
| ISTHMUS_TRACE_STORE_MAX_SPANS         | 100000    | spans held                                             |
| ISTHMUS_TRACE_STORE_MAX_TRACES        | 10000     | traces held                                            |
| ISTHMUS_TRACE_STORE_MAX_BYTES         | 268435456 | bytes of spans held (their JSON; 256 MiB)              |
| ISTHMUS_TELEMETRY_LOGS_PER_SERVICE    | 1000      | access-log entries held per service                    |
| ISTHMUS_TELEMETRY_LOG_SERVICES        | 1000      | services whose access logs are held                    |
| ISTHMUS_TELEMETRY_LOG_MAX_BYTES       | 67108864  | bytes of access-log entries held (their JSON; 64 MiB)  |
| ISTHMUS_OTLP_ENDPOINT                 | (none)    | OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces |
| ISTHMUS_OTLP_MAX_QUEUE                | 10000     | spans waiting for export (more are dropped and counted) |
| ISTHMUS_OTLP_BATCH                    | 512       | spans per export request                               |
| ISTHMUS_OTLP_TIMEOUT                  | 10        | seconds an export request may take                     |
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from urllib.parse import urlparse

DEFAULT_PORT = 20001


@dataclass(frozen=True)
class TelemetrySettings:
    port: int = DEFAULT_PORT
    bind: str = "127.0.0.1"
    max_body_bytes: int = 1024 * 1024
    max_post_spans: int = 1000
    max_connections: int = 256
    idle_timeout: float = 15.0
    interval: float = 5.0
    history_points: int = 720
    max_proxies: int = 10_000
    max_series: int = 100_000
    max_proxy_series: int = 1_000_000
    proxy_retire: float = 600.0
    max_spans: int = 100_000
    max_traces: int = 10_000
    max_trace_bytes: int = 256 * 1024 * 1024
    logs_per_service: int = 1000
    log_services: int = 1000
    log_max_bytes: int = 64 * 1024 * 1024
    otlp_endpoint: str = ""
    otlp_max_queue: int = 10_000
    otlp_batch: int = 512
    otlp_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "TelemetrySettings":
        """ValueError naming the variable for a value that is not a positive number, a port, an IP address
        or an http(s) URL."""
        env = dict(os.environ) if env is None else env
        names = {
            "port": "ISTHMUS_DASHBOARD_PORT", "bind": "ISTHMUS_DASHBOARD_BIND",
            "max_body_bytes": "ISTHMUS_TELEMETRY_MAX_BODY_BYTES", "max_post_spans": "ISTHMUS_TELEMETRY_MAX_POST_SPANS",
            "max_connections": "ISTHMUS_TELEMETRY_MAX_CONNECTIONS", "interval": "ISTHMUS_METRICS_INTERVAL",
            "idle_timeout": "ISTHMUS_TELEMETRY_IDLE_TIMEOUT",
            "history_points": "ISTHMUS_TELEMETRY_HISTORY_POINTS", "max_proxies": "ISTHMUS_TELEMETRY_MAX_PROXIES",
            "max_series": "ISTHMUS_TELEMETRY_MAX_SERIES",
            "max_proxy_series": "ISTHMUS_TELEMETRY_MAX_PROXY_SERIES", "proxy_retire": "ISTHMUS_TELEMETRY_PROXY_RETIRE",
            "max_spans": "ISTHMUS_TRACE_STORE_MAX_SPANS", "max_traces": "ISTHMUS_TRACE_STORE_MAX_TRACES",
            "max_trace_bytes": "ISTHMUS_TRACE_STORE_MAX_BYTES",
            "logs_per_service": "ISTHMUS_TELEMETRY_LOGS_PER_SERVICE", "log_services": "ISTHMUS_TELEMETRY_LOG_SERVICES",
            "log_max_bytes": "ISTHMUS_TELEMETRY_LOG_MAX_BYTES",
            "otlp_endpoint": "ISTHMUS_OTLP_ENDPOINT", "otlp_max_queue": "ISTHMUS_OTLP_MAX_QUEUE",
            "otlp_batch": "ISTHMUS_OTLP_BATCH", "otlp_timeout": "ISTHMUS_OTLP_TIMEOUT",
        }
        values: dict[str, object] = {}
        for f in fields(cls):
            var = names[f.name]
            text = env.get(var, "").strip()
            if not text:
                continue
            if f.type in ("int", "float"):
                try:
                    number = int(text) if f.type == "int" else float(text)
                except ValueError:
                    raise ValueError(f"{var} is {text[:40]!r}: give a positive number") from None
                if not (0 < number < float("inf")):
                    raise ValueError(f"{var} is {text[:40]!r}: give a positive number")
                values[f.name] = number
            else:
                values[f.name] = text
        settings = cls(**values)  # type: ignore[arg-type]
        if not 1 <= settings.port <= 65535:
            raise ValueError(f"ISTHMUS_DASHBOARD_PORT is {settings.port}: give 1-65535")
        try:
            ipaddress.ip_address(settings.bind)
        except ValueError:
            raise ValueError(f"ISTHMUS_DASHBOARD_BIND is {settings.bind[:80]!r}: give an IP address "
                             "(127.0.0.1, ::1, 0.0.0.0)") from None
        if settings.otlp_endpoint:
            url = urlparse(settings.otlp_endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"ISTHMUS_OTLP_ENDPOINT is {settings.otlp_endpoint[:200]!r}: give an http(s) URL, "
                                 "e.g. http://collector:4318/v1/traces")
        return settings

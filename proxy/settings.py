"""The sidecar's settings, resolved once from `isthmus proxy run` flags and ISTHMUS_* env vars."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from proxy.http.limits import KIB, Limits
from proxy.telemetry.metrics import max_series_from_env
from proxy.telemetry.publisher import interval_from_env
from runtime.clientconfig import NatsClient
from runtime.settings import DEFAULT_NATS_URL


def parse_tcp_route(text: str) -> tuple[str, int, int]:
    """`db:5432=15432` -> ("db", 5432, 15432); raises ValueError."""
    target, sep, local = text.partition("=")
    host, colon, port = target.rpartition(":")
    if not sep or not colon or not host:
        raise ValueError(f"{text!r} is not HOST:PORT=LOCAL_PORT")
    return host, _port(port, text), _port(local, text)


def parse_app_tcp(text: str) -> tuple[int, int, int]:
    """`5432=5433` -> (5432, 5433, 0); `5432=5433@15432` -> (5432, 5433, 15432); raises ValueError."""
    service, sep, rest = text.partition("=")
    app, at, listen = rest.partition("@")
    if not sep:
        raise ValueError(f"{text!r} is not SERVICE_PORT=APP_PORT[@INBOUND_PORT]")
    return _port(service, text), _port(app, text), _port(listen, text) if at else 0


def _port(value: str, text: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{value!r} in {text!r} is not a port (1-65535)")
    return int(value)


def build_limits(max_request_headers_kb: int = 60, max_request_headers: int = 100, max_request_url_kb: int = 60,
                 max_pipelined_requests: int = 16, request_headers_timeout: float = 10.0,
                 request_timeout: float = 300.0, stream_idle_timeout: float = 300.0, max_connections: int = 10_000,
                 max_response_headers_kb: int = 60, max_response_headers: int = 100,
                 max_pending_heads_mb: int = 32) -> Limits:
    """The listeners' Limits from `proxy run`'s flags (sizes in KiB as Envoy's *_kb, times in seconds);
    raises ValueError on a value below its minimum."""
    return Limits(max_head_bytes=max_request_headers_kb * KIB, max_headers=max_request_headers,
                  max_url_bytes=max_request_url_kb * KIB, max_pipelined=max_pipelined_requests,
                  request_headers_timeout=request_headers_timeout, request_timeout=request_timeout,
                  stream_idle_timeout=stream_idle_timeout, max_connections=max_connections,
                  max_response_head_bytes=max_response_headers_kb * KIB, max_response_headers=max_response_headers,
                  max_pending_head_bytes=max_pending_heads_mb * KIB * KIB)


@dataclass(frozen=True)
class ProxyOptions:
    service: str
    service_port: int
    app_port: int
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    # "region/zone/subzone" of this workload: localityLbSetting prefers endpoints near it; "" for none
    locality: str = field(default_factory=lambda: os.environ.get("ISTHMUS_LOCALITY", ""))
    service_account: str = "default"
    address: str = "127.0.0.1"  # advertised to peers: where they reach our inbound listener
    app_host: str = "127.0.0.1"
    inbound_host: str = "0.0.0.0"
    inbound_port: int = 15006
    outbound_host: str = "127.0.0.1"
    outbound_port: int = 15001
    admin_port: int = 15000
    nats_url: str = field(default_factory=lambda: os.environ.get("ISTHMUS_NATS_URL", DEFAULT_NATS_URL))
    # the client config's bus section (operator's or this proxy's own; proxy/control/buscreds.py); None: none
    bus_auth: NatsClient | None = None
    bus_token: str = field(default_factory=lambda: os.environ.get("ISTHMUS_TOKEN", ""))  # bootstrap token
    bus_token_problem: str = ""  # why there is no bus_token though --token-file was given (said if it is needed)
    domain_suffix: str = field(default_factory=lambda: os.environ.get("ISTHMUS_DOMAIN_SUFFIX", "svc.cluster.local"))
    lease_ttl: int | None = None  # None: the registry's default
    health_interval: float = 1.0  # seconds between probes of the app's port
    log_level: str = field(default_factory=lambda: os.environ.get("ISTHMUS_LOG_LEVEL", "info"))
    proxy_id: str = ""
    # access log: "" off, "-" stdout, else a file path (proxy/access_log.py)
    access_log: str = field(default_factory=lambda: os.environ.get("ISTHMUS_ACCESS_LOG", ""))
    # its lines: "text" (Istio's default format) or "json" (Istio's JSON keys), also for the Telemetry `envoy` provider
    access_log_format: str = field(default_factory=lambda: os.environ.get("ISTHMUS_ACCESS_LOG_FORMAT", "text"))
    # request body bytes kept per request so a retry can resend it (Envoy's per_connection_buffer_limit_bytes,
    # 1 MiB); a larger body streams and is not retried; 0: bodies are never kept
    retry_buffer_limit: int = field(default_factory=lambda: int(os.environ.get("ISTHMUS_RETRY_BUFFER_LIMIT",
                                                                               str(1024 * 1024))))
    # seconds a route waits for a cluster/subset it names that pilot did not call undefined
    # (proxy/control/config_state.py; Envoy's initial_fetch_timeout)
    pending_grace: float = field(default_factory=lambda: float(os.environ.get("ISTHMUS_PENDING_GRACE", "15")))
    # opaque TCP out: (service host, service port, local port the app connects to)
    tcp_routes: tuple[tuple[str, int, int], ...] = ()
    # opaque TCP in: (service port, app port, inbound listener port; 0: any free port)
    app_tcp: tuple[tuple[int, int, int], ...] = ()
    # DNS for mesh names on 127.0.0.1:<dns_port>, UDP and TCP, with a listener per service on its loopback address
    # (proxy/dns/, docs/dns.md; `proxy run --dns-port`, ISTHMUS_DNS_PORT); 0: off
    dns_port: int = 0
    # the WorkloadGroup (of --namespace) this workload belongs to (docs/workload-group.md); "": none. Bound, the
    # sidecar runs the group's probe (pushed by pilot) instead of its TCP check of the app port
    workload_group: str = ""
    # what one client may make a listener hold, and for how long (proxy/http/limits.py)
    limits: Limits = field(default_factory=Limits)
    # workload identity (proxy/identity/): spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>
    trust_domain: str = field(default_factory=lambda: os.environ.get("ISTHMUS_TRUST_DOMAIN", "cluster.local"))
    token: str = ""  # bootstrap token (--token, env ISTHMUS_TOKEN); "" with no token file: mint one for ourselves
    token_file: str = ""  # read at each try, so a new token can be dropped in
    state_dir: str = ""  # where key and certificate survive a restart (0700/0600); "": memory only
    # certificate lifetime asked of the ca, seconds (ISTHMUS_SECRET_TTL, Istio's SECRET_TTL); 0: the ca's default
    secret_ttl: int = 0
    # renew when this fraction of the certificate's life remains, moved by up to the jitter either way
    # (ISTHMUS_SECRET_GRACE_PERIOD_RATIO[_JITTER]: Istio's SECRET_GRACE_PERIOD_RATIO 0.5 and _JITTER 0.01)
    secret_grace_ratio: float = 0.5
    secret_grace_jitter: float = 0.01
    # seconds a PeerAuthentication switch into or out of DISABLE is held at PERMISSIVE, so client sidecars move
    # to (or off) mutual TLS before this one requires it (proxy/tls/modes.py; ISTHMUS_MTLS_SWITCH_HOLD); 0: at once
    mtls_switch_hold: float = field(default_factory=lambda: float(os.environ.get("ISTHMUS_MTLS_SWITCH_HOLD", "10")))
    # spans (proxy/telemetry/, docs/tracing.md): a batch goes to the telemetry service when `span_batch` spans wait
    # or `span_flush_interval` seconds passed; at most `span_queue` wait (the oldest dropped past it); a tag
    # value keeps `span_max_tag_length` characters (ISTHMUS_SPAN_FLUSH_INTERVAL, _BATCH, _QUEUE, _MAX_TAG_LENGTH)
    span_flush_interval: float = 1.0
    span_batch: int = 100
    span_queue: int = 1000
    span_max_tag_length: int = 256
    # Istio's workload name and cluster for metrics (source_workload / destination_workload, *_cluster): `proxy run
    # --workload-name` (ISTHMUS_WORKLOAD_NAME; "": proto.observations.workload_name_of) and --cluster (ISTHMUS_CLUSTER;
    # "": "unknown"), registered with the workload so pilot pushes them on its Endpoint
    workload_name: str = field(default_factory=lambda: os.environ.get("ISTHMUS_WORKLOAD_NAME", ""))
    cluster: str = field(default_factory=lambda: os.environ.get("ISTHMUS_CLUSTER", ""))
    # seconds between metrics snapshots on the bus (proxy/telemetry/publisher.py; ISTHMUS_METRICS_INTERVAL)
    metrics_interval: float = field(default_factory=interval_from_env)
    # label sets per metrics recorder (proxy/telemetry/metrics.py; ISTHMUS_METRICS_MAX_SERIES)
    metrics_max_series: int = field(default_factory=max_series_from_env)
    # the transport of TLS connections (proxy/tls/transport.py): "aiofastnet" or "uvloop" (ISTHMUS_TLS_TRANSPORT)
    tls_transport: str = field(default_factory=lambda: os.environ.get("ISTHMUS_TLS_TRANSPORT", "aiofastnet"))

    @property
    def id(self) -> str:
        return self.proxy_id or f"{self.service}-{socket.gethostname()}-{self.inbound_port}.{self.namespace}"

"""What sidecars and services report to the telemetry service over the bus, and what the telemetry service
serves its dashboard. Subjects in proto/subjects.py (TELEMETRY_*); who may publish them in proto/busauth.py.

Metrics are cumulative since the reporting process started (`instance` changes on a restart), so a lost
snapshot loses nothing and a restart shows as a counter reset, which the telemetry service handles as
Prometheus does (the last values of the old instance are kept as a base). Label values follow Istio's
standard metrics (istio.io/latest/docs/reference/config/metrics/), in the order of HTTP_LABELS / TCP_LABELS.
Spans are Zipkin v2 spans (zipkin-api's zipkin2-api.yaml), so the same struct is the bus message, the
store's record and the HTTP API's JSON.
"""

from __future__ import annotations

import msgspec

from proto.base import Message

# Istio's standard labels, in the order series carry their values. "unknown" where a value is unknown.
HTTP_LABELS: tuple[str, ...] = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
)
# TCP series have no response code or gRPC status (Istio's TCP metrics)
TCP_LABELS: tuple[str, ...] = tuple(name for name in HTTP_LABELS if name not in ("response_code", "grpc_response_status"))


class Histogram(Message):
    """Counts per bucket (not cumulative; one more than the bounds: the last is +Inf), their sum and count."""

    counts: list[int]
    sum: float = 0.0


class HttpSeries(Message):
    """One label set's HTTP metrics: istio_requests_total, istio_request_duration_milliseconds (ms),
    istio_request_bytes and istio_response_bytes (body bytes)."""

    labels: list[str]  # values in HTTP_LABELS order
    requests: int
    duration_ms: Histogram
    request_bytes: Histogram
    response_bytes: Histogram


class TcpSeries(Message):
    """One label set's TCP metrics: istio_tcp_{sent,received}_bytes_total, istio_tcp_connections_{opened,closed}_total."""

    labels: list[str]  # values in TCP_LABELS order
    sent_bytes: int = 0
    received_bytes: int = 0
    opened: int = 0
    closed: int = 0


class MetricsSnapshot(Message):
    """A sidecar's cumulative metrics (subject TELEMETRY_METRICS.<namespace>.<service account>), every
    ISTHMUS_METRICS_INTERVAL seconds. `seq` grows by one per snapshot of an instance."""

    proxy_id: str
    instance: str  # random per process start
    namespace: str
    seq: int
    time: float  # unix seconds
    http: list[HttpSeries] = []
    tcp: list[TcpSeries] = []


class ServiceMetrics(Message):
    """A control-plane service's prometheus-client exposition (subject TELEMETRY_SERVICE_METRICS.<service>)."""

    service: str
    instance: str
    time: float
    text: str  # Prometheus text format 0.0.4, as prometheus_client.generate_latest writes it


class PeerMetadata(Message):
    """A sidecar's own workload, as it tells the peer sidecar (header PEER_METADATA_HEADER): the source_*
    labels of the destination's metrics. Istio exchanges the same with x-envoy-peer-metadata."""

    workload: str
    namespace: str
    app: str = "unknown"
    version: str = "unknown"
    canonical_service: str = "unknown"
    canonical_revision: str = "latest"
    cluster: str = "unknown"
    service: str = ""  # the service the workload registered as


PEER_METADATA_HEADER = "x-isthmus-peer-metadata"


def workload_name_of(service: str, labels: dict[str, str], explicit: str = "") -> str:
    """A workload's name for metrics: the explicit one, else "<service>-<version label>", else the service
    (bookinfo's reviews-v1, productpage-v1 as their Kubernetes Deployments are named)."""
    if explicit:
        return explicit
    version = labels.get("version")
    return f"{service}-{version}" if version else service


def canonical_service_of(labels: dict[str, str], workload: str) -> str:
    """Istio's canonical service: label service.istio.io/canonical-name, else app.kubernetes.io/name, else app,
    else the workload name (istio pkg/model/labels canonical name rules)."""
    return (labels.get("service.istio.io/canonical-name") or labels.get("app.kubernetes.io/name")
            or labels.get("app") or workload)


def canonical_revision_of(labels: dict[str, str]) -> str:
    """Istio's canonical revision: service.istio.io/canonical-revision, else app.kubernetes.io/version, else
    version, else "latest"."""
    return (labels.get("service.istio.io/canonical-revision") or labels.get("app.kubernetes.io/version")
            or labels.get("version") or "latest")


# --- spans (Zipkin v2) ----------------------------------------------------------------------------------
class ZipkinEndpoint(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int | None = None


class Annotation(msgspec.Struct, kw_only=True, omit_defaults=True):
    timestamp: int  # unix microseconds
    value: str


class Span(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A Zipkin v2 span: ids lower-case hex (trace 16 or 32 digits, span 16), times in microseconds."""

    trace_id: str
    id: str
    parent_id: str | None = None
    name: str | None = None
    kind: str | None = None  # CLIENT, SERVER, PRODUCER, CONSUMER
    timestamp: int | None = None
    duration: int | None = None
    local_endpoint: ZipkinEndpoint | None = None
    remote_endpoint: ZipkinEndpoint | None = None
    annotations: list[Annotation] | None = None
    tags: dict[str, str] | None = None
    debug: bool | None = None
    shared: bool | None = None


class SpanBatch(Message):
    """Spans a sidecar finished (subject TELEMETRY_SPANS.<namespace>.<service account>)."""

    proxy_id: str
    spans: list[Span] = []


# --- access logs ----------------------------------------------------------------------------------------
class AccessLogEntry(Message):
    """One request or TCP connection, with Istio's JSON access-log keys (its default JSON format) plus the
    trace id and peer principals. Times: start_time ISO 8601 UTC; duration and upstream_service_time ms."""

    start_time: str
    listener: str = ""  # inbound / outbound
    method: str | None = None
    path: str | None = None
    protocol: str | None = None  # HTTP/1.1, TCP
    response_code: int = 0
    response_flags: str = "-"
    response_code_details: str | None = None
    connection_termination_details: str | None = None
    bytes_received: int = 0
    bytes_sent: int = 0
    duration: int = 0
    upstream_service_time: int | None = None
    x_forwarded_for: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    authority: str | None = None
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    downstream_remote_address: str | None = None
    downstream_local_address: str | None = None
    requested_server_name: str | None = None
    trace_id: str | None = None
    downstream_peer_principal: str | None = None  # inbound: the caller's SPIFFE ID (mTLS)
    upstream_peer_principal: str | None = None  # outbound: the SPIFFE ID the upstream presented


class AccessLogBatch(Message):
    """Entries a sidecar shipped (subject TELEMETRY_LOGS.<namespace>.<service account>)."""

    proxy_id: str
    namespace: str
    service: str
    entries: list[AccessLogEntry] = []


# --- the dashboard's JSON API (services/telemetry) ------------------------------------------------------
class GraphNode(Message):
    id: str  # "<namespace>/<app>/<version>" (a workload), or "<namespace>/<service>" (a service node)
    kind: str  # "workload" | "service" | "unknown" (a caller outside the mesh)
    namespace: str
    app: str
    version: str = ""
    workload: str = ""
    service: str = ""  # a service node: its FQDN (destination_service), the key /api/series?service= takes


class GraphEdge(Message):
    """Calls from `source` to `target` over the window: requests per second, share of 5xx (0..1), latency
    percentiles in ms (None without requests), share of requests on mutual TLS (0..1), protocol http/tcp."""

    source: str
    target: str
    protocol: str
    rps: float
    error_rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    mtls: float = 0.0
    tcp_bytes_per_s: float = 0.0


class ServiceGraph(Message):
    time: float
    window_s: float
    nodes: list[GraphNode] = []
    edges: list[GraphEdge] = []


class SeriesPoint(Message):
    time: float
    rps: float
    error_rate: float
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None


class ServiceSeries(Message):
    """One service's inbound traffic over time (reporter=destination), a point per step."""

    service: str  # destination_service (FQDN)
    namespace: str
    step_s: float
    points: list[SeriesPoint] = []

"""WorkloadGroup (networking.istio.io): the template of the workloads a group of VMs registers, and the readiness
probe their sidecars run (https://istio.io/latest/docs/reference/config/networking/workload-group/).

    WorkloadGroupSpec {metadata: {labels, annotations}, template: WorkloadEntry, probe: ReadinessProbe}
    ReadinessProbe    {initialDelaySeconds, timeoutSeconds, periodSeconds, successThreshold, failureThreshold,
                       exactly one of httpGet {path, port, host, scheme, httpHeaders}, tcpSocket {host, port},
                       exec {command}}

Istio's gRPC probe (`grpc`) is a field here so that a document using it gets a clear "not supported yet" from
validation instead of "unknown field". A sidecar binds to a group with `proxy run --workload-group NAME`
(docs/workload-group.md); pilot pushes the group's probe to it in its WorkloadSecurity entry (proto/xds.py).
"""

from __future__ import annotations

from proto.base import IstioStruct, Message
from proto.networking import WorkloadEntrySpec


class GroupMetadata(IstioStruct):
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class HttpHeader(IstioStruct):
    name: str = ""
    value: str = ""


class HttpProbeSpec(IstioStruct):
    port: int = 0
    path: str | None = None
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HttpHeader] = []


class TcpProbeSpec(IstioStruct):
    port: int = 0
    host: str | None = None


class ExecProbeSpec(IstioStruct):
    command: list[str] = []


class GrpcProbeSpec(IstioStruct):
    port: int = 0
    service: str | None = None


class ReadinessProbe(IstioStruct):
    initial_delay_seconds: int = 0
    timeout_seconds: int = 0
    period_seconds: int = 0
    success_threshold: int = 0
    failure_threshold: int = 0
    http_get: HttpProbeSpec | None = None
    tcp_socket: TcpProbeSpec | None = None
    exec: ExecProbeSpec | None = None
    grpc: GrpcProbeSpec | None = None


class WorkloadGroupSpec(IstioStruct):
    metadata: GroupMetadata | None = None
    template: WorkloadEntrySpec | None = None  # required (validation says so, with its path)
    probe: ReadinessProbe | None = None


# Istio's defaults (pkg/istio-agent/health fillInDefaults): a 0 or unset value takes these
DEFAULT_TIMEOUT_S = 1
DEFAULT_PERIOD_S = 10
DEFAULT_THRESHOLD = 1


class Probe(Message):
    """A WorkloadGroup's probe as pilot pushes it to a bound sidecar (WorkloadSecurity.probe), defaults filled
    in (Istio's fillInDefaults): exactly one of `http`, `tcp`, `exec` is set. Times in seconds.

    kind: "http" | "tcp" | "exec"; host "": the sidecar's --app-host; path "/" and scheme "http" by default;
    headers: [(name, value)] in order; command: argv, run without a shell. source: "namespace/name" of the group.
    """

    source: str
    kind: str
    initial_delay_s: int = 0
    timeout_s: int = DEFAULT_TIMEOUT_S
    period_s: int = DEFAULT_PERIOD_S
    success_threshold: int = DEFAULT_THRESHOLD
    failure_threshold: int = DEFAULT_THRESHOLD
    host: str = ""
    port: int = 0
    path: str = "/"
    scheme: str = "http"
    headers: list[tuple[str, str]] = []
    command: list[str] = []


def compile_probe(spec: ReadinessProbe, source: str) -> Probe | None:
    """The pushed form of a validated probe (None when it has no method this sidecar runs)."""
    common = dict(source=source, initial_delay_s=spec.initial_delay_seconds,
                  timeout_s=spec.timeout_seconds or DEFAULT_TIMEOUT_S, period_s=spec.period_seconds or DEFAULT_PERIOD_S,
                  success_threshold=spec.success_threshold or DEFAULT_THRESHOLD,
                  failure_threshold=spec.failure_threshold or DEFAULT_THRESHOLD)
    if spec.http_get is not None:
        h = spec.http_get
        return Probe(kind="http", host=h.host or "", port=h.port, path=h.path or "/",
                     scheme=(h.scheme or "http").lower(), headers=[(x.name, x.value) for x in h.http_headers],
                     **common)  # type: ignore[arg-type]
    if spec.tcp_socket is not None:
        return Probe(kind="tcp", host=spec.tcp_socket.host or "", port=spec.tcp_socket.port, **common)  # type: ignore[arg-type]
    if spec.exec is not None:
        return Probe(kind="exec", command=list(spec.exec.command), **common)  # type: ignore[arg-type]
    return None

"""Istio's Telemetry resource (`telemetry.istio.io` v1/v1alpha1) and what pilot compiles it into for one
workload's sidecar (TelemetryPolicy, carried by WorkloadSecurity.telemetry).

Semantics follow Istio's Telemetry API (istio.io/latest/docs/reference/config/telemetry/): a policy in the
root namespace without a selector is the mesh default, one in a namespace without a selector that
namespace's default, one with a selector picks workloads of its namespace; the most specific wins, field by
field (tracing, accessLogging), as Istio's `telemetry.go` merges them. Fields we do not support are declared
only so the validator refuses them with their path.
"""

from __future__ import annotations

from typing import Any

from proto.base import IstioStruct, Message
from proto.security import PeerSelector


class ProviderRef(IstioStruct):
    """istio.telemetry.v1.ProviderRef: a name from the mesh's providers (docs/observability.md: built in
    `zipkin` and `isthmus` for tracing, `envoy` (the sidecar's own log) and `isthmus` (batches to the
    telemetry service) for access logs)."""

    name: str | None = None


class TracingSelector(IstioStruct):
    mode: str | None = None  # CLIENT_AND_SERVER (default), CLIENT, SERVER


class Tracing(IstioStruct):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: float | None = None  # 0..100; unset: inherited, else the mesh default (1%)
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, Any] | None = None  # literal / environment / header: validated by pilot
    use_request_id_for_trace_sampling: bool | None = None  # refused by the validator (not supported)
    enable_istio_tags: bool | None = None


class AccessLogSelector(IstioStruct):
    mode: str | None = None  # CLIENT_AND_SERVER (default), CLIENT, SERVER


class AccessLogFilter(IstioStruct):
    expression: str | None = None  # CEL, e.g. `response.code >= 400`


class AccessLogging(IstioStruct):
    match: AccessLogSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


class TelemetrySpec(IstioStruct):
    selector: PeerSelector | None = None
    target_ref: Any = None  # refused by the validator
    target_refs: Any = None  # refused by the validator
    tracing: list[Tracing] | None = None
    metrics: Any = None  # Istio's metric overrides: refused by the validator (not supported)
    access_logging: list[AccessLogging] | None = None


# --- compiled, per workload ----------------------------------------------------------------------------
MODE_CLIENT_AND_SERVER = "CLIENT_AND_SERVER"
MODE_CLIENT = "CLIENT"  # the sidecar's outbound side (reporter=source)
MODE_SERVER = "SERVER"  # the sidecar's inbound side (reporter=destination)


class TracingPolicy(Message):
    """What the sidecar does with spans. sampling_percent: Istio's randomSamplingPercentage (0..100) for
    requests that arrive without a sampling decision; None: the mesh default (MeshConfig.trace_sampling).
    report: spans are sent to the telemetry service (disableSpanReporting false). mode: which side."""

    mode: str = MODE_CLIENT_AND_SERVER
    sampling_percent: float | None = None
    report: bool = True
    custom_tags: dict[str, str] = {}  # tag -> literal value (header/environment tags resolved by the sidecar)
    header_tags: dict[str, str] = {}  # tag -> request header name (lower case)
    environment_tags: dict[str, str] = {}  # tag -> the sidecar's environment variable it reads
    tag_defaults: dict[str, str] = {}  # tag -> its defaultValue when the header or variable is absent


class AccessLogPolicy(Message):
    """One accessLogging entry as it applies to a sidecar: `provider` envoy (the sidecar's log: its
    --access-log file, else stdout) or isthmus (batches to the telemetry service); `filter` a CEL
    expression (Istio's), "" for every request."""

    provider: str
    mode: str = MODE_CLIENT_AND_SERVER
    disabled: bool = False
    filter: str = ""


class TelemetryPolicy(Message):
    """The Telemetry resources that apply to one workload, merged as Istio merges them. `sources`: the
    "namespace/name" of each, most general first."""

    sources: list[str] = []
    tracing: TracingPolicy | None = None  # None: the mesh default (sampling from MeshConfig, spans reported)
    # set only when the outbound (CLIENT) and inbound (SERVER) sides both differ from the default and from each
    # other (entries with match.mode): then `tracing` is the CLIENT side's policy and this the SERVER side's
    tracing_server: TracingPolicy | None = None
    access_logs: list[AccessLogPolicy] = []  # empty: the sidecar's own --access-log setting alone

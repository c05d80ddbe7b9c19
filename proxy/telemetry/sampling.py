"""What one side of the sidecar does with traces, resolved once per push, and its sampling decision.

    side_policy(telemetry, mesh_sampling, side) -> SidePolicy
    SidePolicy.decide() -> bool           a request that arrived without a decision: sample it?

The policy comes from the workload's Telemetry resources as pilot compiled them (proto.telemetry.
TracingPolicy on WorkloadSecurity.telemetry); without one, the mesh default: sampling
MeshConfig.trace_sampling percent (Istio's meshConfig.defaultConfig.tracing.sampling, 1%), spans reported,
both sides. Semantics of Istio's Telemetry API (istio.io/latest/docs/reference/config/telemetry/#Tracing):
`randomSamplingPercentage` applies only to requests without a decision (an incoming sampled flag is
honoured either way, as Envoy's tracers do); `match.mode` picks the side (CLIENT: the outbound listener,
SERVER: the inbound one); a side it leaves out does no tracing at all: it neither makes spans nor adds
or changes trace headers (Istio configures no tracing on that listener); `disableSpanReporting` keeps
sampling and propagation but reports nothing.
"""

from __future__ import annotations

import os
import random

from proto.telemetry import MODE_CLIENT, MODE_CLIENT_AND_SERVER, MODE_SERVER, TelemetryPolicy

CLIENT = "CLIENT"  # the outbound listener: Zipkin kind CLIENT
SERVER = "SERVER"  # the inbound listener: Zipkin kind SERVER

_random = random.random


class SidePolicy:
    """`enabled`: this side traces (mode covers it); `percent` (0..100) of undecided requests sampled;
    `report`: sampled spans are reported; `custom_tags` (tag -> literal) and `header_tags` (tag -> lower-case
    request header) added to every span, `header_defaults` (tag -> value) when that header is absent.

    `environment_tags` (tag -> variable) are read once here from the sidecar's environment, as Envoy's
    EnvironmentCustomTag reads them once: the variable's value, else the tag's `tag_defaults` entry, becomes a
    literal. Like Envoy's custom tags, an empty value sets no tag."""

    __slots__ = ("enabled", "percent", "report", "custom_tags", "header_tags", "header_defaults", "ratio")

    def __init__(self, enabled: bool = True, percent: float = 1.0, report: bool = True,
                 custom_tags: dict[str, str] | None = None, header_tags: dict[str, str] | None = None,
                 environment_tags: dict[str, str] | None = None, tag_defaults: dict[str, str] | None = None) -> None:
        self.enabled = enabled
        self.percent = min(100.0, max(0.0, percent))
        self.report = report
        defaults = tag_defaults or {}
        self.custom_tags = {tag: value for tag, value in (custom_tags or {}).items() if value}
        for tag, variable in (environment_tags or {}).items():
            value = os.environ.get(variable) or defaults.get(tag, "")
            if value:
                self.custom_tags[tag] = value
        self.header_tags = {tag: name.lower() for tag, name in (header_tags or {}).items()}
        self.header_defaults = {tag: defaults[tag] for tag in self.header_tags if defaults.get(tag)}
        self.ratio = self.percent / 100.0  # read inline by Tracer.begin

    def decide(self) -> bool:
        """One random draw against `percent`: 0 never samples, 100 always does."""
        return _random() < self.ratio

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SidePolicy) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return (f"SidePolicy(enabled={self.enabled}, percent={self.percent}, report={self.report}, "
                f"custom_tags={self.custom_tags}, header_tags={self.header_tags}, "
                f"header_defaults={self.header_defaults})")


def side_policy(telemetry: TelemetryPolicy | None, mesh_sampling: float, side: str) -> SidePolicy:
    """The policy of `side` (CLIENT or SERVER) for a workload whose pushed TelemetryPolicy is `telemetry`
    (None: none applies) in a mesh whose default sampling is `mesh_sampling` percent."""
    tracing = telemetry.tracing if telemetry is not None else None
    if tracing is None:
        return SidePolicy(True, mesh_sampling)
    mode = tracing.mode or MODE_CLIENT_AND_SERVER
    enabled = mode == MODE_CLIENT_AND_SERVER or (mode == MODE_CLIENT and side == CLIENT) \
        or (mode == MODE_SERVER and side == SERVER)
    percent = tracing.sampling_percent if tracing.sampling_percent is not None else mesh_sampling
    return SidePolicy(enabled, percent, tracing.report, tracing.custom_tags, tracing.header_tags,
                      tracing.environment_tags, tracing.tag_defaults)

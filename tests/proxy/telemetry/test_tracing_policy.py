"""A sidecar's tracing follows its pushes (proxy/telemetry/tracing.py, wired in proxy/main.py): its own
WorkloadSecurity.telemetry, else the mesh's trace_sampling; a push that drops the entry goes back to the default."""

from __future__ import annotations

from proto.telemetry import TelemetryPolicy, TracingPolicy
from proto.xds import MeshConfig, Push, WorkloadSecurity
from proxy.control.config_state import ConfigState
from proxy.telemetry.tracing import SidecarTracing


def sidecar() -> tuple[ConfigState, SidecarTracing]:
    state = ConfigState(workload_id="reviews-1")
    tracing = SidecarTracing(proxy_id="reviews-1", service="reviews", namespace="bookinfo", service_account="sa",
                             labels={"app": "reviews"}, address="10.0.0.1", service_port=9080,
                             domain_suffix="svc.cluster.local", trust_domain="cluster.local")
    state.on_apply.append(lambda: tracing.update(state.security, state.mesh))
    return state, tracing


def test_before_any_push_both_sides_sample_istios_default_one_percent():
    _, tracing = sidecar()
    assert tracing.client.policy.percent == tracing.server.policy.percent == 1.0
    assert tracing.reporter.subject == "isthmus.telemetry.spans.bookinfo.sa"


def test_the_mesh_default_then_the_workloads_telemetry_then_back():
    state, tracing = sidecar()
    state.apply(Push(epoch="e", seq=1, version=1, full=True, mesh=MeshConfig(trace_sampling=5.0)))
    assert tracing.client.policy.percent == 5.0 and tracing.server.policy.enabled
    own = WorkloadSecurity(workload="reviews-1", version=2, telemetry=TelemetryPolicy(
        sources=["bookinfo/t"], tracing=TracingPolicy(mode="CLIENT", sampling_percent=100.0, report=False)))
    other = WorkloadSecurity(workload="ratings-1", version=2, telemetry=TelemetryPolicy(
        tracing=TracingPolicy(sampling_percent=0.0)))
    state.apply(Push(epoch="e", seq=2, version=2, mesh=MeshConfig(trace_sampling=5.0), security=[other, own]))
    client, server = tracing.client.policy, tracing.server.policy
    assert (client.enabled, client.percent, client.report) == (True, 100.0, False)
    assert not server.enabled
    assert tracing.dump()["client"]["sampling_percent"] == 100.0
    state.apply(Push(epoch="e", seq=3, version=3, mesh=MeshConfig(trace_sampling=5.0),  # the Telemetry deleted
                     security=[WorkloadSecurity(workload="reviews-1", version=3)]))
    assert tracing.client.policy.percent == 5.0 and tracing.server.policy.enabled and tracing.client.policy.report

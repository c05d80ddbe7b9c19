"""A sidecar's tracing, assembled: the outbound (CLIENT) and inbound (SERVER) tracers, the span reporter
they share, and the policy each push brings (proto.xds.WorkloadSecurity.telemetry, MeshConfig.trace_sampling).

    SidecarTracing(...).client / .server     the listeners' Tracer (proxy/http/listener_state.ServerState.tracer)
    SidecarTracing.update(security, mesh)    after each applied push
    SidecarTracing.dump() -> dict            for /config_dump
"""

from __future__ import annotations

from typing import Any

from proto.observations import workload_name_of
from proto.subjects import TELEMETRY_SPANS, identity_subject
from proto.xds import MeshConfig, WorkloadSecurity
from proxy.telemetry.sampling import CLIENT, SERVER, side_policy
from proxy.telemetry.span_reporter import BATCH, FLUSH_INTERVAL, MAX_QUEUE, SpanReporter
from proxy.telemetry.spans import MAX_TAG_LENGTH, site_for
from proxy.telemetry.tracer import Tracer


class SidecarTracing:
    def __init__(self, *, proxy_id: str, service: str, namespace: str, service_account: str,
                 labels: dict[str, str], address: str, service_port: int, domain_suffix: str, trust_domain: str,
                 locality: str = "", batch: int = BATCH, max_queue: int = MAX_QUEUE,
                 interval: float = FLUSH_INTERVAL, max_tag: int = MAX_TAG_LENGTH) -> None:
        self.reporter = SpanReporter(proxy_id, identity_subject(TELEMETRY_SPANS, namespace, service_account),
                                     batch, max_queue, interval)
        site = dict(service=service, namespace=namespace, labels=labels,
                    workload=workload_name_of(service, labels),
                    node_id=proxy_id, address=address, service_port=service_port, domain_suffix=domain_suffix,
                    mesh_id=trust_domain, locality=locality, max_tag=max_tag)
        self.client = Tracer(site_for(CLIENT, **site), side_policy(None, MeshConfig().trace_sampling, CLIENT),
                             self.reporter)
        self.server = Tracer(site_for(SERVER, **site), side_policy(None, MeshConfig().trace_sampling, SERVER),
                             self.reporter)

    def update(self, security: WorkloadSecurity | None, mesh: MeshConfig) -> None:
        """The policies after a push: this workload's Telemetry (None: the mesh default) and the mesh sampling."""
        telemetry = security.telemetry if security is not None else None
        self.client.policy = side_policy(telemetry, mesh.trace_sampling, CLIENT)
        self.server.policy = side_policy(telemetry, mesh.trace_sampling, SERVER)

    def dump(self) -> dict[str, Any]:
        def side(tracer: Tracer) -> dict[str, Any]:
            p = tracer.policy
            return {"enabled": p.enabled, "sampling_percent": p.percent, "report": p.report,
                    "custom_tags": p.custom_tags, "header_tags": p.header_tags,
                    "header_defaults": p.header_defaults}
        return {"client": side(self.client), "server": side(self.server), "reporter": self.reporter.stats()}

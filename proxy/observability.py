"""What a sidecar observes and reports, wired once: Istio's standard metrics (proxy/telemetry/, read by the
admin port's /stats/prometheus and published on the bus every --metrics-interval), the Telemetry API's
accessLogging per side (the --access-log, the `envoy` provider, the `isthmus` provider's shipper) and tracing
(a client span outbound, a server span inbound: docs/tracing.md). proxy/main.py builds the listeners with
`outbound_options()` / `inbound_options()`, then `attach`es them; `start` and `stop` follow the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from proxy.access_log import ListenerLog
from proxy.control.config_state import ConfigState
from proxy.core.access import OnComplete
from proxy.http.listener import Listener
from proxy.settings import ProxyOptions
from proxy.tcp.listener import TcpListener
from proxy.tcp.metrics import TcpMetrics
from proxy.telemetry import peer_metadata
from proxy.telemetry.access_logging import AccessLogging
from proxy.telemetry.exposition import SidecarMetrics
from proxy.telemetry.http_metrics import InboundMetrics, OutboundMetrics
from proxy.telemetry.labels import LocalWorkload
from proxy.telemetry.log_shipper import LogShipper
from proxy.telemetry.metrics import TcpRecorder
from proxy.telemetry.publisher import SnapshotPublisher
from proxy.telemetry.tracing import SidecarTracing
from runtime import bus as busmod


class SidecarTelemetry:
    """`log_for(listener)`: the --access-log's sink for a side (None without one); `envoy_log(listener)`: the
    Telemetry `envoy` provider's sink (the --access-log, else stdout)."""

    def __init__(self, options: ProxyOptions, state: ConfigState, log_for: Callable[[str], OnComplete | None],
                 envoy_log: Callable[[str], ListenerLog]) -> None:
        o = options
        self.state = state
        self.me = LocalWorkload(o.service, o.namespace, o.labels, o.workload_name, o.cluster, o.service_account,
                                o.trust_domain, o.domain_suffix)
        cap = o.metrics_max_series
        self.http_out, self.http_in = OutboundMetrics(self.me, cap), InboundMetrics(self.me, cap)
        tcp_out, tcp_in = TcpRecorder("outbound_tcp", "source", cap), TcpRecorder("inbound_tcp", "destination", cap)
        self.tcp_out, self.tcp_in = TcpMetrics(tcp_out, self.me, True), TcpMetrics(tcp_in, self.me, False)
        self.metrics = SidecarMetrics([self.http_out, self.http_in], [tcp_out, tcp_in])
        self.snapshots = SnapshotPublisher(self.metrics, o.id, o.namespace, o.service_account, o.metrics_interval)
        self.shipper = LogShipper(o.id, o.namespace, o.service, o.service_account)
        self.logging = AccessLogging(log_for, envoy_log, self.shipper.sink)
        self.log_for = log_for
        self.tracing = SidecarTracing(
            proxy_id=o.id, service=o.service, namespace=o.namespace, service_account=o.service_account,
            labels=dict(o.labels), address=o.address, service_port=o.service_port, domain_suffix=o.domain_suffix,
            trust_domain=o.trust_domain, locality=o.locality, batch=o.span_batch, max_queue=o.span_queue,
            interval=o.span_flush_interval, max_tag=o.span_max_tag_length)
        self.listeners: tuple[Listener, Listener, list[TcpListener], list[TcpListener]] | None = None

    def outbound_options(self) -> dict[str, Any]:
        """The outbound HTTP listener's telemetry: its access log, metrics and the peer metadata line it adds."""
        return {"on_complete": self.log_for("outbound"), "metrics": self.http_out,
                "peer_line": peer_metadata.header_line(self.me.peer_metadata())}

    def inbound_options(self) -> dict[str, Any]:
        """The inbound HTTP listener's telemetry: its access log, metrics and the cache of callers' metadata."""
        return {"on_complete": self.log_for("inbound"), "metrics": self.http_in,
                "peers": peer_metadata.PeerMetadataCache()}

    def tcp_options(self, outbound: bool) -> dict[str, Any]:
        side = "outbound" if outbound else "inbound"
        return {"access_log": self.log_for(side), "metrics": self.tcp_out if outbound else self.tcp_in}

    def attach(self, outbound: Listener, inbound: Listener, tcp_out: list[TcpListener],
               tcp_in: list[TcpListener]) -> None:
        """Tracers on the HTTP listeners, CONNECT tunnels counted as outbound TCP, open relays swept before the
        metrics are read, and every push re-applies tracing and access logging."""
        self.listeners = (outbound, inbound, tcp_out, tcp_in)
        outbound.state.tracer, inbound.state.tracer = self.tracing.client, self.tracing.server
        outbound.state.tunnel_metrics = self.tcp_out
        self.metrics.before_read += [listener.sweep_metrics for listener in [*tcp_out, *tcp_in]]
        self.metrics.before_read.append(self.tcp_out.sweep_tunnels)
        self.state.on_apply.append(lambda: self.tracing.update(self.state.security, self.state.mesh))
        self.state.on_apply.append(self._apply_logging)

    def _apply_logging(self) -> None:
        """After a push: each listener's on_complete / access_log as the workload's Telemetry says."""
        assert self.listeners is not None
        outbound, inbound, tcp_out, tcp_in = self.listeners
        self.logging.apply(self.state.security)
        out_sink, in_sink = self.logging.sink("outbound"), self.logging.sink("inbound")
        outbound.state.on_complete, inbound.state.on_complete = out_sink, in_sink
        for listener in tcp_out:
            listener.access_log = out_sink
        for listener in tcp_in:
            listener.access_log = in_sink

    def start(self, bus: busmod.Bus) -> list[asyncio.Task[Any]]:
        """The reporters: shipped access logs, metrics snapshots, span batches."""
        self.shipper.attach(bus.publish, bus.max_payload)
        return [asyncio.create_task(self.shipper.run()), asyncio.create_task(self.snapshots.run(bus)),
                asyncio.create_task(self.tracing.reporter.run(bus))]

    async def stop(self, bus: busmod.Bus) -> None:
        """What the last requests logged and counted, drained requests included (spans: their reporter's stop)."""
        await self.shipper.ship()
        await self.snapshots.publish(bus)

    def dump(self) -> dict[str, Any]:
        """/config_dump's access-logging parts."""
        return {"access_logging": self.logging.dump(),
                "access_log_shipping": {"queued": len(self.shipper.queue), "shipped": self.shipper.shipped,
                                        "dropped": self.shipper.dropped}}

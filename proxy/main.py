"""The sidecar process: listeners first, then the control plane in the background.

Start-up order matters for static stability: the outbound and inbound listeners and the admin port
come up before the bus is reached, so a proxy started while the control plane is down serves as soon
as it has config, and one that loses the control plane keeps serving what it holds. The inbound
listener forwards every request to the local app; the outbound one routes by the mesh config.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from proto.observations import workload_name_of
from proto.registry import Workload
from proxy.access_log import AccessLog
from proxy.admin import AdminServer
from proxy.control import buscreds
from proxy.control.config_state import ConfigState
from proxy.control.registration import Registration
from proxy.control.security_state import Owner
from proxy.control.xds_client import XdsClient
from proxy.http import exchange
from proxy.http.listener import Listener
from proxy.http.upstream_pool import ConnectionPool
from proxy.identity.agent import IdentityAgent, IdentityConfig, IdentityFatal
from proxy.identity.certs import certs_dump
from proxy.inbound.local_app import LocalAppRouter
from proxy.outbound.dns_cache import DnsCache
from proxy.outbound.router import MeshRouter
from proxy.observability import SidecarTelemetry
from proxy.settings import ProxyOptions
from proxy.sidecar.control_plane import SidecarControlPlane
from proxy.sidecar.errors import CredentialsError, StartError, reason
from proxy.sidecar.listeners import SidecarListeners
from proxy.sidecar.status import SidecarStatus
from proxy.tcp.listener import TcpListener
from proxy.tls import transport as tls_transport
from proxy.tls.modes import InboundModes
from proxy.tls.upstream import UpstreamTls
from runtime import bus as busmod
from runtime.log import configure, get_logger


if TYPE_CHECKING:
    from proxy.dns.sidecar import SidecarDns

# what the CLI, the gateway, tests and bench/ import from here (some defined in proxy/sidecar/ or below)
__all__ = ["CredentialsError", "LocalAppRouter", "Sidecar", "StartError", "log_loop_error", "reason", "run_proxy"]

STOP_GRACE = 5.0  # seconds a stopping sidecar lets requests in flight finish (Istio's terminationDrainDuration)


class Sidecar(SidecarListeners, SidecarControlPlane, SidecarStatus):
    """Built here from ProxyOptions, run and stopped here; its other methods by concern in proxy/sidecar/."""

    def __init__(self, options: ProxyOptions, early: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """`early`: X.509 workers `proxy run` started before importing this (proxy/identity/x509_client.py)."""
        self.options = options
        self.early = early
        self.log = configure(options.log_level, "proxy")
        exchange.RETRY_BUFFER_LIMIT = options.retry_buffer_limit  # read by every exchange with a body
        # drawn per run: this run takes only the security entry pilot compiled from its own registration
        self.instance = secrets.token_hex(8)
        self.state = ConfigState(options.pending_grace, workload_id=options.id,
                                 owner=Owner(options.namespace, options.service, options.service_account, self.instance))
        limits = options.limits
        self.pool = ConnectionPool(max_head_bytes=limits.max_response_head_bytes,
                                   max_headers=limits.max_response_headers)
        self.pool.resolver = DnsCache()  # names of hosts outside the mesh (passthrough), off the loop
        self.router = MeshRouter(self.state, options.namespace, options.domain_suffix, options.labels, options.locality)
        self.xds = XdsClient(self.state, options.id, options.service, options.namespace)
        workload = Workload(id=options.id, service=options.service, namespace=options.namespace,
                            address=options.address, service_port=options.service_port,
                            inbound_port=options.inbound_port, labels=dict(options.labels),
                            service_account=options.service_account, locality=options.locality,
                            app_ports={options.service_port: options.app_port,
                                       **{svc: app for svc, app, _ in options.app_tcp}},
                            workload_name=workload_name_of(options.service, options.labels, options.workload_name),
                            cluster=options.cluster, workload_group=options.workload_group,
                            instance=self.instance)
        self.registration = Registration(workload, options.app_host, options.app_port, options.lease_ttl,
                                         options.health_interval)
        # a WorkloadGroup's probe arrives in this workload's pushed entry (docs/workload-group.md)
        self.state.on_apply.append(lambda: self.registration.set_probe(
            self.state.security.probe if self.state.security is not None else None))
        try:
            self.access_log = AccessLog(options.access_log, options.access_log_format) if options.access_log else None
        except OSError as exc:
            raise StartError(f"--access-log {options.access_log}: {reason(exc)}") from exc
        except ValueError as exc:
            raise StartError(f"--access-log-format {options.access_log_format}: {exc}") from exc
        log_for = self.access_log.for_listener if self.access_log is not None else lambda name: None
        # metrics, access logging and tracing (proxy/observability.py)
        self.telemetry = telemetry = SidecarTelemetry(options, self.state, log_for, self._envoy_log)
        # workload identity (proxy/identity/agent.py): loaded from --state-dir as the listeners start, then obtained
        # and renewed beside them; the listeners never wait for it
        self.identity = IdentityAgent(IdentityConfig(
            trust_domain=options.trust_domain, namespace=options.namespace, service_account=options.service_account,
            token=options.token, token_file=options.token_file, state_dir=options.state_dir,
            ttl_seconds=options.secret_ttl, grace_ratio=options.secret_grace_ratio,
            grace_jitter=options.secret_grace_jitter, mint=self._mint_with_operator_config()))
        # mutual TLS: out, per endpoint as each push decides (proxy/tls/upstream.py); in, per app port by the
        # PeerAuthentication mode pilot pushed for this workload (proxy/tls/modes.py), asked per connection
        provider = self.identity.provider
        tls_transport.configure(options.tls_transport)
        upstream_tls = UpstreamTls(provider)
        self.state.originate, self.state.tls_check = upstream_tls.originate, upstream_tls.problem
        self.modes = InboundModes([options.app_port, *(app for _, app, _ in options.app_tcp)],
                                  options.mtls_switch_hold)
        self.state.on_apply.append(lambda: self.modes.update(self.state.security))

        def server_context() -> ssl.SSLContext | None:
            current = provider.current
            return current.server if current is not None else None

        self.outbound = Listener(options.outbound_host, options.outbound_port, self.router, self.pool, "outbound",
                                 limits=limits, **telemetry.outbound_options())
        self.app_router = LocalAppRouter(options.app_host, options.app_port, options.service, self.state,
                                         options.namespace, options.domain_suffix, options.labels)
        self.inbound = Listener(options.inbound_host, options.inbound_port, self.app_router,
                                self.pool, "inbound", limits=limits, tls_mode=lambda: self.modes.mode(options.app_port),
                                tls_context=server_context, **telemetry.inbound_options())
        # opaque TCP (proxy/tcp/relay.py): outbound per --tcp, inbound per --app-tcp
        self.tcp_out = [TcpListener(options.outbound_host, local, self._tcp_picker(host, port),
                                    f"outbound {host}:{port}", f"{host}:{port}",
                                    max_connections=limits.max_connections, **telemetry.tcp_options(True))
                        for host, port, local in options.tcp_routes]
        self.tcp_in = {service_port: TcpListener(options.inbound_host, listen, self._app_picker(app_port),
                                                 f"inbound {service_port}", f"{options.app_host}:{app_port}",
                                                 max_connections=limits.max_connections,
                                                 tls_mode=self._app_mode(app_port), tls_context=server_context,
                                                 authorize=self._tcp_authz, app_port=app_port,
                                                 **telemetry.tcp_options(False))
                       for service_port, app_port, listen in options.app_tcp}
        self.fatal: IdentityFatal | None = None
        self.stopping = asyncio.Event()
        telemetry.attach(self.outbound, self.inbound, self.tcp_out, list(self.tcp_in.values()))
        # DNS for mesh names (proxy/dns/, --dns-port): a loopback address per service, listened on for its ports
        self.dns: SidecarDns | None = None
        self.dns_listening: tuple[tuple[str, int], ...] = ()  # (address, port) its listeners hold now
        if options.dns_port:
            from proxy.dns.sidecar import SidecarDns  # dnspython (~1 MB) only in sidecars that answer DNS

            self.dns = SidecarDns(options.dns_port, self.state, self.router, self.outbound.state, self._dns_tcp,
                                  options.namespace, options.domain_suffix, self._dns_listening)
            self.state.on_apply.append(self._dns_push)  # after telemetry's: the outbound sink is the new one
            telemetry.metrics.before_read.append(self.dns.listeners.sweep_metrics)
        self.admin = AdminServer("127.0.0.1", options.admin_port, self.is_ready, self.config_dump, self.server_info,
                                 self.state.clusters_status, lambda: certs_dump(self.identity),
                                 telemetry.metrics.prometheus_off_loop, not_ready=self.not_ready)
        self.bus: busmod.Bus | None = None
        self.bus_auth: Any = None  # this sidecar's bus credentials, obtained in run() (proxy/control/buscreds.py)
        self.started_at = time.time()
        self.tasks: list[asyncio.Task[Any]] = []

    async def run(self) -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_error)
        try:
            self.identity.prepare()
        except OSError as exc:
            raise StartError(f"--state-dir {self.options.state_dir}: {reason(exc)}") from exc
        # an X.509 worker child checks the stored certificate (or makes the first key) while the listeners start,
        # the bus credentials are checked and the bus is reached; the workload registers after (control_plane.py)
        self.loading = loading = asyncio.create_task(self.identity.load_stored(self.early))
        try:
            await self.start_listeners()
            o = self.options  # a taken port is reported before the bus is asked for anything
            try:
                tls_ca = o.bus_auth.tls_ca if o.bus_auth is not None else ""
                # saved credentials first, even with a token: `isthmus join` already spent the token's join on
                # them, and a unit restarts with the same --token-file (a second join of a one-use token is refused)
                kept = await buscreds.saved(o.nats_url, o.state_dir, tls_ca)
                if kept is None and not o.bus_token and o.bus_token_problem and not (o.bus_auth and o.bus_auth.user):
                    raise CredentialsError(f"no bus credentials: {o.bus_token_problem}")
                self.bus_auth = kept or await buscreds.obtain(o.nats_url, o.bus_auth, o.namespace, o.service_account,
                                                              o.bus_token)
                if o.state_dir and kept is None and self.bus_auth.user.startswith("proxy."):
                    try:
                        buscreds.save(o.state_dir, self.bus_auth)
                    except OSError as exc:
                        self.log.warning("cannot keep the bus credentials in --state-dir", error=str(exc))
            except CredentialsError:
                await self._stop_listeners(0)
                raise
        except (StartError, CredentialsError):
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            if self.access_log is not None:
                self.access_log.close()
            raise
        self.tasks.append(asyncio.create_task(self._control_plane()))
        self.tasks.append(asyncio.create_task(self.xds.run()))
        gc.freeze()  # what start-up allocated is never garbage: keep it out of every collection
        self.log.info("ready", **self.ready_fields())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()
        await self.stop()
        if self.fatal is not None:
            raise self.fatal

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Deregister, then drain every listener at once; all within about `grace` seconds."""
        self.log.info("stopping")
        deadline = asyncio.get_running_loop().time() + grace
        await self.registration.deregister()  # peers stop sending before our listeners close
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.identity.close()
        await self._stop_listeners(max(0.1, deadline - asyncio.get_running_loop().time()))
        self.pool.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.bus is not None:
            await self.telemetry.stop(self.bus)  # the last access logs and counts, drained requests included
            await self.bus.close()


def log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The sidecar's loop exception handler: what escapes a callback or a protocol (a bug of ours) is one
    JSON error line with the traceback, like every other internal error (proxy/http/rescue.py).

    Nothing at interpreter exit: the loop is gone, and the garbage collected then is finalized in no set order.
    A connection the bus refused leaves a StreamReaderProtocol whose `_closed` future holds the reset; the
    protocol marks it retrieved when it goes first, else asyncio reported "Future exception was never retrieved"
    after the sidecar's last line (`error: ...` when it cannot start), as the allocation pattern happened to fall."""
    if sys.is_finalizing():
        return
    exc = context.get("exception")
    get_logger("proxy").error("internal_error", error=context.get("message", "") or repr(exc),
                              exc_info=exc if exc is not None else False)


def run_proxy(options: ProxyOptions, early: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    """Run a sidecar until SIGINT/SIGTERM. Raises StartError (one line naming the flag) when it cannot start,
    IdentityFatal (one line) when the ca refuses it an identity for good. `early`: x509_client.spawn_early()'s."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(Sidecar(options, early).run())

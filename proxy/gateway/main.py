"""The gateway process (`isthmus gateway run`): the sidecar (proxy/main.py) in gateway mode.

It is a Sidecar whose listeners are the Gateway ports instead of the outbound/inbound pair: everything else is
the sidecar's own, not a copy (config from pilot, the routing table and upstream pool with auto mTLS to sidecars,
the workload identity, registration, the policies of proxy/inbound/local_app.py, telemetry, the admin port).
The sidecar's outbound and inbound Listener objects are made by Sidecar.__init__ but never bound.

Per `--port LISTEN:GATEWAY_PORT` one HTTP listener on --listen-host:LISTEN, accepting through a TlsAcceptor
(proxy/tls/acceptor.py) that peeks each connection: on a port whose pushed servers terminate TLS, TLS is
required (a plaintext connection is closed, as STRICT) and the ClientHello's SNI picks the server and so its
context (proxy/gateway/credentials.py); on other ports TLS is not spoken (as DISABLE: a ClientHello reaches the
HTTP parser and gets a 400). Requests route through GatewayRouter (proxy/gateway/router.py); metrics are the
outbound side's (reporter="source", source labels the gateway's own workload, as Istio's gateways report),
with its access log and client spans.

Registered as Workload.gateway with gateway_ports {GATEWAY_PORT: LISTEN}; its health probe is the admin port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from proto.gateway_xds import SERVER_TLS_OPTIONAL_MUTUAL
from proto.registry import Workload
from proxy.gateway.compiled import compile_gateway
from proxy.gateway.credentials import Secrets, ServerContexts
from proxy.gateway.hosts import pick_by_name
from proxy.gateway.passthrough import relay_factory
from proxy.gateway.san_check import checked_protocol
from proxy.gateway.router import GatewayRouter
from proxy.gateway.secret_client import SecretClient
from proxy.http.listener import Listener
from proxy.http.server import HttpProxyProtocol
from proxy.main import Sidecar, log_loop_error
from proxy.outbound.self_loop import OwnListeners
from proxy.settings import ProxyOptions
from proxy.tcp.listener import TcpListener
from proxy.tls.acceptor import DISABLE, STRICT


class Gateway(Sidecar):
    """`ports`: (listen port, Gateway port) pairs; `listen_host`: the address the Gateway ports bind;
    `secrets`: the credentialName source (proxy/gateway/secret_client.SecretClient), None: none (a
    credentialName server then never serves TLS)."""

    def __init__(self, options: ProxyOptions, ports: list[tuple[int, int]], listen_host: str = "0.0.0.0",
                 secrets: Secrets | None = None) -> None:
        super().__init__(options)
        self.gateway_ports = list(ports)
        self.listen_host = listen_host
        self.secrets = secrets
        state = self.state
        state.compile_gateway = compile_gateway
        self.contexts = ServerContexts(self.identity.provider, secrets)
        state.on_apply.append(self._applied)
        telemetry = self.telemetry
        self.http: dict[int, Listener] = {}
        self.tcp: dict[int, TcpListener] = {}
        o = options
        for listen, gateway_port in ports:
            router = GatewayRouter(gateway_port, state, self.router, self.app_router)
            listener = Listener(listen_host, listen, router, self.pool, "inbound", limits=options.limits,
                                tls_mode=self._mode(gateway_port), tls_context=self.contexts.for_port(gateway_port),
                                tls_by_sni=True, **telemetry.outbound_options())
            listener.state.tracer = telemetry.tracing.client
            # opaque connections (PASSTHROUGH, TCP servers): relays held by a TcpListener that is never bound; each
            # is checked against the gateway's AuthorizationPolicies (Envoy's network RBAC filter), and closed
            # before its security entry arrives, as the HTTP requests are (proxy/inbound/local_app.py)
            tcp = TcpListener(listen_host, listen, lambda client: None, f"gateway {gateway_port}",  # type: ignore[arg-type,return-value]
                              f"{o.service}:{gateway_port}", max_connections=options.limits.max_connections,
                              authorize=self._tcp_authz, **telemetry.tcp_options(True))
            listener.factory = self._factory(gateway_port, listener, tcp)
            self.http[gateway_port], self.tcp[gateway_port] = listener, tcp
        telemetry.metrics.before_read += [tcp.sweep_metrics for tcp in self.tcp.values()]
        self.registration.workload = Workload(
            id=o.id, service=o.service, namespace=o.namespace, address=o.address,
            service_port=ports[0][1], inbound_port=ports[0][0], labels=dict(o.labels),
            service_account=o.service_account, locality=o.locality, workload_name=o.workload_name or o.service,
            cluster=o.cluster, gateway=True, gateway_ports={gw: listen for listen, gw in ports},
            instance=self.instance)
        self.registration.app_host, self.registration.app_port = "127.0.0.1", o.admin_port  # health: we answer

    def _mode(self, gateway_port: int) -> Any:
        def mode() -> str:
            compiled = self.state.gateway_compiled
            port = compiled.ports.get(gateway_port) if compiled is not None else None
            return STRICT if port is not None and port.tls else DISABLE
        return mode

    def _factory(self, gateway_port: int, listener: Listener, tcp: TcpListener) -> Callable[[], asyncio.Protocol]:
        """Per accepted connection: a relay on a PASSTHROUGH or TCP port (as the push has it now), else HTTP."""
        state, mesh, http_state = self.state, self.router, listener.state

        def names(sni: str) -> tuple[list[str], bool] | None:
            compiled = state.gateway_compiled
            port = compiled.ports.get(gateway_port) if compiled is not None else None
            server = pick_by_name(port.servers, sni, port.default) if port is not None else None
            tls = server.server.tls if server is not None else None
            return (tls.subject_alt_names, tls.mode != SERVER_TLS_OPTIONAL_MUTUAL) if tls is not None else None
        checked = checked_protocol(names)

        def factory() -> asyncio.Protocol:
            compiled = state.gateway_compiled
            port = compiled.ports.get(gateway_port) if compiled is not None else None
            if port is not None:
                if port.relays:
                    return relay_factory(gateway_port, state, mesh, tcp)
                if port.san_check:
                    return checked(http_state)
            return HttpProxyProtocol(http_state)
        return factory

    def _applied(self) -> None:
        """After each push: the TLS contexts of the new servers, and the access log the Telemetry says."""
        if self.contexts.compiled is not self.state.gateway_compiled:
            self.contexts.apply(self.state.gateway_compiled)
        sink = self.telemetry.logging.sink("outbound")
        for listener in self.http.values():
            listener.state.on_complete = sink
        for tcp in self.tcp.values():
            tcp.access_log = sink

    def ready_fields(self) -> dict[str, Any]:
        return {"gateway_ports": {gw: listener.port for gw, listener in self.http.items()},
                "admin": self.options.admin_port, "service": self.options.service,
                "namespace": self.options.namespace}

    def listeners(self) -> list[tuple[str, Any]]:
        return [*((f"--port {listener.port}:{gw}", listener) for gw, listener in self.http.items()),
                (f"--admin-port {self.options.admin_port}", self.admin)]

    async def start_listeners(self) -> None:
        await super().start_listeners()
        workload = self.registration.workload  # registered with the bound ports (0 in tests: any free one)
        workload.gateway_ports = {gw: listener.port for gw, listener in self.http.items()}
        workload.inbound_port = workload.gateway_ports[workload.service_port]

    def own_listeners(self) -> OwnListeners:
        o = self.options
        return OwnListeners((o.address, self.listen_host, "127.0.0.1"),
                            tuple(listener.port for listener in self.http.values()))

    async def _stop_listeners(self, grace: float) -> None:
        await asyncio.gather(*(listener.stop(grace) for listener in self.http.values()), self.admin.stop())
        for tcp in self.tcp.values():  # never bound: stop() would not close its relays
            for relay in list(tcp.relays):
                relay.close()
        for _ in range(3):
            await asyncio.sleep(0)

    def is_ready(self) -> bool:
        """Config from pilot including this gateway's own listeners, and the workload certificate when something
        needs it: an ISTIO_MUTUAL server, or an endpoint reached with auto mTLS (as Envoy waits for the SDS
        secrets its config names). Pilot compiles a gateway's listeners once its registration is known (an empty
        entry when no Gateway selects it): a push before that has routes but no Gateway server, and traffic let
        in then was answered 503 gateway_port_not_configured (as Envoy is not ready before its first LDS). Its
        security entry (the AuthorizationPolicies that select it) comes in the same push; without it nothing is
        admitted (proxy/inbound/local_app.py)."""
        if not self.xds.synced.is_set() or self.state.gateway is None or not self.app_router.configured:
            return False
        if self.identity.provider.current is not None:
            return True
        compiled = self.state.gateway_compiled
        if compiled is not None and compiled.needs_workload_certificate():
            return False
        return not any(ep.auto_mtls for cluster in self.state.clusters.values() for ep in cluster.endpoints)

    def config_dump(self) -> dict[str, Any]:
        dump = super().config_dump()
        dump["gateway_tls"] = self.contexts.dump()
        if self.secrets is not None and hasattr(self.secrets, "dump"):
            dump["credentials"] = self.secrets.dump()  # type: ignore[attr-defined]
        return dump

    def server_info(self) -> dict[str, Any]:
        o = self.options
        return {"id": o.id, "service": o.service, "namespace": o.namespace, "labels": o.labels, "gateway": True,
                "ports": {gw: f"{self.listen_host}:{listener.port}" for gw, listener in self.http.items()},
                "bus_connected": bool(self.bus and self.bus.connected),
                "tls": {gw: listener.acceptor.stats.as_dict() for gw, listener in self.http.items()
                        if listener.acceptor is not None},
                "authz_rules": self.app_router.authz.rules if self.app_router.authz is not None else 0,
                "tracing": self.telemetry.tracing.dump(),
                "synced": self.is_ready(), "uptime_s": round(time.time() - self.started_at, 1)}


def run_gateway(options: ProxyOptions, ports: list[tuple[int, int]], listen_host: str = "0.0.0.0") -> None:
    """Run a gateway until SIGINT/SIGTERM; raises what run_proxy raises (StartError, CredentialsError,
    IdentityFatal)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_error)
        secrets = SecretClient(options.namespace, options.service_account)
        gateway = Gateway(options, ports, listen_host, secrets)
        gateway.tasks.append(asyncio.create_task(_run_secrets(gateway, secrets)))
        await gateway.run()

    asyncio.run(main())


async def _run_secrets(gateway: Gateway, secrets: SecretClient) -> None:
    while gateway.bus is None:  # the bus is connected in the background (Sidecar._control_plane)
        await asyncio.sleep(0.1)
    await secrets.run(gateway.bus)

"""The sidecar's listeners: what each is handed when proxy/main.py Sidecar.__init__ builds it (the pickers of
its TCP listeners, the AuthorizationPolicy check of inbound TCP, the Telemetry `envoy` log), binding them all
and stopping them together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from proxy.access_log import AccessLog, ListenerLog
from proxy.core.target import Target
from proxy.inbound.authz.engine import TcpCheck
from proxy.outbound.self_loop import OwnListeners
from proxy.sidecar.errors import StartError, bind
from proxy.sidecar.parts import SidecarParts
from proxy.tcp.listener import TcpListener
from proxy.tcp.relay import Picker


def _refuse_unconfigured(downstream: object) -> tuple[bool, str]:
    return False, "inbound_config_not_received"


class SidecarListeners(SidecarParts):
    def _envoy_log(self, listener: str) -> ListenerLog:
        """The Telemetry `envoy` provider's sink: the --access-log destination, else stdout (opened on first use)."""
        if self.access_log is None:
            self.access_log = AccessLog("-", self.options.access_log_format)
        return self.access_log.for_listener(listener)

    def _tcp_picker(self, host: str, port: int) -> Picker:
        tcp_pick = self.router.tcp_pick
        resolver = self.pool.resolver

        def pick(client: str) -> Target:
            target = tcp_pick(host, port, client)
            if resolver is not None and resolver.own is not None:  # an endpoint at our own --tcp/outbound port
                resolver.own.check(target.address, target.port)
            return target
        return pick

    def _dns_tcp(self, fqdn: str, address: str, port: int) -> TcpListener:
        """The listener for an opaque TCP port of a service on its DNS loopback address: as a --tcp one."""
        return TcpListener(address, port, self._tcp_picker(fqdn, port), f"outbound {fqdn}:{port}", f"{fqdn}:{port}",
                           access_log=self.outbound.state.on_complete,
                           max_connections=self.options.limits.max_connections, metrics=self.telemetry.tcp_out)

    def _dns_listening(self, keys: Iterable[tuple[str, int]]) -> None:
        """The DNS listeners bound now are our own too: an endpoint at one of them would loop."""
        self.dns_listening = tuple(keys)
        self.pool.resolver.own = self.own_listeners()  # type: ignore[union-attr]

    def _dns_push(self) -> None:
        assert self.dns is not None
        self.dns.listeners.set_access_log(self.outbound.state.on_complete)
        self.dns.changed()

    def _tcp_authz(self) -> TcpCheck | None:
        """The AuthorizationPolicy check for inbound TCP connections, as the last push compiled it; before the
        first push every connection is closed (the policies are unknown: proxy/inbound/local_app.py)."""
        if not self.app_router.configured:
            return _refuse_unconfigured
        authz = self.app_router.authz
        return authz.tcp if authz is not None else None

    def _app_mode(self, app_port: int) -> Callable[[], str]:
        mode = self.modes.mode
        return lambda: mode(app_port)

    def _app_picker(self, app_port: int) -> Picker:
        target = Target(self.options.app_host, app_port, f"inbound|{app_port}||")
        return lambda client: target

    def listeners(self) -> list[tuple[str, Any]]:
        """(the flag that sets its port, listener) for every socket the sidecar binds, in start order."""
        o = self.options
        tcp_out = [(f"--tcp {host}:{port}={local}", listener)
                   for (host, port, local), listener in zip(o.tcp_routes, self.tcp_out)]
        tcp_in = [(f"--app-tcp {svc}={app}" + (f"@{listen}" if listen else ""), self.tcp_in[svc])
                  for svc, app, listen in o.app_tcp]
        return [(f"--outbound-port {o.outbound_port}", self.outbound), (f"--inbound-port {o.inbound_port}", self.inbound),
                *tcp_out, *tcp_in, (f"--admin-port {o.admin_port}", self.admin),
                *([(f"--dns-port {o.dns_port}", self.dns)] if self.dns is not None else [])]

    async def start_listeners(self) -> None:
        """Bind every listener; if one cannot, close those already bound and raise StartError."""
        started: list[Any] = []
        try:
            for flag, listener in self.listeners():
                await bind(listener.start, flag)
                started.append(listener)
        except StartError:
            for listener in reversed(started):
                await listener.stop()
            raise
        for service_port, listener in self.tcp_in.items():
            self.registration.workload.tcp_ports[service_port] = listener.port  # registered with the real port
        self.pool.resolver.own = self.own_listeners()  # type: ignore[union-attr]

    def own_listeners(self) -> OwnListeners:
        """The bound ports whose traffic goes out again, at our own addresses (proxy/outbound/self_loop.py),
        and the DNS listeners (proxy/dns/), which loop at their exact address:port only."""
        o = self.options
        return OwnListeners((o.address, o.outbound_host, o.inbound_host),
                            (self.outbound.port, *(listener.port for listener in self.tcp_out)), self.dns_listening)

    async def _stop_listeners(self, grace: float) -> None:
        """Stop all listeners together (in flight: `grace` s, then cut), then let the cut connections' callbacks
        run, so what they log reaches the access log before it closes. The DNS server and the services'
        listeners stop first: their HTTP connections are the outbound listener's, drained with it."""
        if self.dns is not None:
            await self.dns.stop()
        await asyncio.gather(self.outbound.stop(grace), self.inbound.stop(grace),
                             *(listener.stop() for listener in [*self.tcp_out, *self.tcp_in.values()]),
                             self.admin.stop())
        for _ in range(3):  # connection_lost runs a loop turn after abort(); a tunnel's relay one more
            await asyncio.sleep(0)

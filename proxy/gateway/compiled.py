"""A gateway's pushed config (proto/gateway_xds.GatewayListeners) compiled once per push for the data path.

    compile_gateway(config, routes_of) -> CompiledGateway     ValueError: why the push is refused (NACK)

Per Gateway port (CompiledPort): the HTTP virtual hosts as a DomainTable of CompiledRoutes (proxy/gateway/
hosts.py), the hosts of HTTP servers with httpsRedirect, and the TLS servers as a DomainTable keyed by their
hosts (SNI picks one) with the port's default server (the `*` one, else the first). Certificates from files
are read and their SSLContexts built here; a credentialName server's context is built when its credential
arrives or changes (proxy/gateway/credentials.py); an ISTIO_MUTUAL server uses the workload certificate's
server context as the identity agent keeps it. Nothing of this is done per connection or per request.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import Callable

from proto.gateway_xds import (
    SERVER_TLS_ISTIO_MUTUAL, SERVER_TLS_PASSTHROUGH, GatewayListeners, GatewayPortConfig, GatewayServer,
)
from proto.routes import HttpRule, Redirect, TcpRule
from proxy.core.target import Target
from proxy.gateway.hosts import DomainTable
from proxy.gateway.tls_context import check_settings, file_material, server_context
from proxy.outbound.route import CompiledRoute, CompiledRule, CompiledTcpRule

TERMINATED_PROTOCOLS = ("HTTPS", "TLS")  # TLS servers (PASSTHROUGH aside) terminate here
HTTP_PROTOCOLS = ("HTTP", "HTTPS", "HTTP2", "GRPC")


class TlsServer:
    """One TLS server of a port: the context new handshakes get (None: it cannot serve TLS now: a credential
    not received, no workload certificate yet)."""

    __slots__ = ("server", "where", "fixed", "credential", "istio", "context_of_credential", "credential_version",
                 "credential_ca_version", "hosts")

    def __init__(self, server: GatewayServer, where: str) -> None:
        assert server.tls is not None
        self.server = server
        self.where = where
        self.fixed: ssl.SSLContext | None = None  # built from files at compile
        self.credential = server.tls.credential_name
        self.istio = server.tls.mode == SERVER_TLS_ISTIO_MUTUAL
        self.context_of_credential: ssl.SSLContext | None = None  # (re)built when the credential changes
        self.credential_version = -1
        self.credential_ca_version = -1  # the `-cacert` companion's version the context was built with
        # the Hosts a request on a connection this server terminated may name (its own hosts: Istio gives each
        # server its own filter chain and route config, so another server's Host is a 404 there)
        self.hosts: DomainTable[bool] = DomainTable((host, True) for host in server.hosts)


class CompiledPort:
    """What one Gateway port serves. `tls`: TLS is required (its servers terminate TLS); `passthrough`: its
    servers pass TLS through by SNI (proxy/gateway/passthrough.py)."""

    __slots__ = ("port", "config", "vhosts", "redirects", "servers", "default", "tls", "passthrough", "tcp_only",
                 "sni_routes", "tcp_rules", "san_check", "relays")

    def __init__(self, config: GatewayPortConfig, gateway_id: str) -> None:
        self.port = config.port
        self.config = config
        routes: list[tuple[str, CompiledRoute]] = []
        for i, vhost in enumerate(config.virtual_hosts):
            try:
                compiled = CompiledRoute(vhost.route)
            except ValueError as exc:
                raise ValueError(f"gateway {gateway_id} port {config.port} virtual host {i} "
                                 f"({vhost.route.source}): {exc}") from exc
            routes += [(domain, compiled) for domain in vhost.domains]
        self.vhosts: DomainTable[CompiledRoute] = DomainTable(routes)
        self.redirects: DomainTable[Target] | None = None
        redirect_hosts = [host for s in config.servers if s.tls is not None and s.tls.https_redirect
                          and s.protocol in HTTP_PROTOCOLS for host in s.hosts]
        if redirect_hosts:
            target = https_redirect_target()
            self.redirects = DomainTable((host, target) for host in redirect_hosts)
        tls_servers: list[TlsServer] = []
        self.passthrough = False
        for i, server in enumerate(config.servers):
            where = f"gateway {gateway_id} port {config.port} server {server.name or i} ({server.gateway})"
            if server.tls is None or server.protocol not in TERMINATED_PROTOCOLS:
                continue  # plaintext (an httpsRedirect lives on an HTTP server's tls)
            check_settings(server.tls, where)
            if server.tls.mode == SERVER_TLS_PASSTHROUGH:
                self.passthrough = True
                continue
            entry = TlsServer(server, where)
            if not entry.credential and not entry.istio:
                chain, key, ca = file_material(server.tls, where)
                entry.fixed = server_context(server.tls, chain, key, ca, where)
            tls_servers.append(entry)
        if tls_servers and self.passthrough:
            raise ValueError(f"gateway {gateway_id} port {config.port}: PASSTHROUGH and terminating TLS servers on "
                             "one port are not supported")
        self.tls = bool(tls_servers)
        self.san_check = any(s.server.tls.subject_alt_names for s in tls_servers)  # type: ignore[union-attr]
        self.tcp_only = bool(config.servers) and all(s.protocol == "TCP" for s in config.servers)
        if self.tcp_only and tls_servers:
            raise ValueError(f"gateway {gateway_id} port {config.port}: TCP and TLS servers on one port")
        try:  # tls routes by SNI (PASSTHROUGH), tcp routes (TCP servers): weighted picks as a sidecar's tcp routes
            self.sni_routes: DomainTable[CompiledTcpRule] = DomainTable(
                (host, CompiledTcpRule(TcpRule(destinations=r.destinations))) for r in config.tls_routes
                for host in r.sni_hosts)
            self.tcp_rules = tuple(CompiledTcpRule(r) for r in config.tcp_routes)
        except ValueError as exc:
            raise ValueError(f"gateway {gateway_id} port {config.port}: {exc}") from exc
        # opaque relays instead of HTTP: PASSTHROUGH, TCP servers, and TLS servers (protocol TLS) that terminate
        # and have tcp routes, no http ones (TLS terminated here, then opaque TCP)
        self.relays = self.passthrough or self.tcp_only or (
            bool(tls_servers) and bool(self.tcp_rules) and not config.virtual_hosts
            and all(s.server.protocol == "TLS" for s in tls_servers))
        self.servers: DomainTable[TlsServer] = DomainTable((host, s) for s in tls_servers for host in s.server.hosts)
        self.default = next((s for s in tls_servers if "*" in s.server.hosts), tls_servers[0] if tls_servers else None)

    def tls_servers(self) -> list[TlsServer]:
        seen: dict[int, TlsServer] = {}
        for server in [*self.servers.exact.values(), *(v for _, v in self.servers.wildcards), self.servers.star]:
            if server is not None:
                seen.setdefault(id(server), server)
        if self.default is not None:
            seen.setdefault(id(self.default), self.default)
        return list(seen.values())


def https_redirect_target() -> Target:
    """The local answer of an httpsRedirect server: 301 to https://<Host as sent><path> (Envoy's require_tls
    ALL, which Istio sets for it: the Host header is kept whole, port and all; only an explicit :80 goes, as
    the http scheme's default)."""
    rule = CompiledRule(HttpRule(redirect=Redirect(scheme="https", code=301)))
    assert rule.local is not None
    return rule.local


class CompiledGateway:
    __slots__ = ("config", "ports")

    def __init__(self, config: GatewayListeners) -> None:
        self.config = config
        self.ports: dict[int, CompiledPort] = {}
        for port_config in config.ports:
            if port_config.port in self.ports:
                raise ValueError(f"gateway {config.workload}: port {port_config.port} is pushed twice")
            self.ports[port_config.port] = CompiledPort(port_config, config.workload)

    def credentials(self) -> list[str]:
        """The credentialName of every server that terminates TLS with one, once each, in precedence order: the
        first TLS server of every port, then the second ... (pilot lists a port's servers oldest Gateway first),
        so when there are more than the SecretClient holds (MAX_WANTED), a newer Gateway's crowd out only each
        other, never the credentials older Gateways' servers already serve."""
        columns = [[s.credential for s in p.tls_servers() if s.credential] for p in self.ports.values()]
        ordered: dict[str, None] = {}
        for row in itertools.zip_longest(*columns):
            for name in row:
                if name:
                    ordered.setdefault(name, None)
        return list(ordered)

    def needs_workload_certificate(self) -> bool:
        return any(s.istio for p in self.ports.values() for s in p.tls_servers())


Compile = Callable[[GatewayListeners | None], "CompiledGateway | None"]


def compile_gateway(config: GatewayListeners | None) -> CompiledGateway | None:
    """The compiled form of `config` (None: no config for this gateway); ValueError says what is refused."""
    return CompiledGateway(config) if config is not None else None

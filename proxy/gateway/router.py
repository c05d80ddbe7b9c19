"""The gateway's Router for one Gateway port: its own policies, then the port's virtual host by Host, then
the same stages as a sidecar's outbound side (proxy/outbound/router.py):

    policies  proxy/inbound/local_app.py  the gateway's RequestAuthentication (401), AuthorizationPolicies
                                          (403), RateLimits (429) from its own WorkloadSecurity and cluster,
                                          as a sidecar's inbound side runs them; 503 before the first push
    sni       proxy/gateway/compiled.py   on a TLS port, a Host the SNI-picked server does not list: 404 NR
    https     proxy/gateway/compiled.py   an httpsRedirect server's host: 301 to https://
    vhost     proxy/gateway/hosts.py      the Host (no port, any case) -> the port's RouteConfig: exact,
                                          longest wildcard, `*`; none: 404 NR
    logical   proxy/outbound/logical.py   the RouteConfig's first matching rule (local answers: redirect,
                                          directResponse)
    concrete  proxy/outbound/concrete.py  destination by weight, cluster, subset, port
    endpoint  proxy/outbound/endpoint.py  balancer, outlier ejections; the transport the push decided (auto
                                          mTLS to sidecars with the gateway's workload certificate)

Retries and mirrors pick through the sidecar's MeshRouter (the same table). Per request: one attribute read
for the policies, two cached dict lookups (redirect hosts, virtual host; on TLS ports two more: SNI, Host), then the sidecar's own stages.
"""

from __future__ import annotations

from typing import Protocol

from proxy.core.errors import HOST_SHOWN, NoRoute, ProxyError
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.gateway.compiled import CompiledGateway
from proxy.gateway.hosts import pick_by_name
from proxy.inbound.local_app import LocalAppRouter
from proxy.outbound import concrete, endpoint, logical
from proxy.outbound.router import MeshRouter


class GatewayNotConfigured(ProxyError):
    """503 on a gateway port pilot has pushed nothing for (Envoy has no listener for it: a client would see the
    connection refused; a bound port can only answer)."""

    status = 503
    flag = "NR"
    details = "gateway_port_not_configured"


class CompiledSource(Protocol):
    gateway_compiled: CompiledGateway | None


class GatewayRouter:
    """Router of the listener serving Gateway port `port`."""

    def __init__(self, port: int, source: CompiledSource, mesh: MeshRouter, policies: LocalAppRouter) -> None:
        self.port = port
        self.source = source
        self.mesh = mesh
        self.policies = policies
        self.caller = mesh.caller  # sourceLabels / sourceNamespace matches see the gateway's own labels
        self.retry_pick = mesh.retry_pick
        self.mirror_pick = mesh.mirror_pick

    def pick(self, head: RequestHead) -> Target:
        admit = self.policies.admit
        if admit is not None:
            admit(head)  # raises to refuse; the local app's target it returns is not ours
        compiled = self.source.gateway_compiled
        port = compiled.ports.get(self.port) if compiled is not None else None
        if port is None:
            raise GatewayNotConfigured(f"no Gateway server for port {self.port} on this gateway")
        if port.tls:  # terminated here: only the hosts of the server the ClientHello's SNI picked (and so its
            # certificate, client certificate checks and subjectAltNames): SNI a.example.com (SIMPLE) with
            # `Host: b.example.com` must not reach the routes of b's MUTUAL server
            server = pick_by_name(port.servers, head.downstream.sni, port.default)
            if server is None or server.hosts.lookup(head.host) is None:
                raise NoRoute(f"host {head.host[:HOST_SHOWN]!r} is not served by the TLS server this connection's "
                              f"SNI {head.downstream.sni[:HOST_SHOWN]!r} chose on gateway port {self.port}")
        if port.redirects is not None:
            redirect = port.redirects.lookup(head.host)
            if redirect is not None:
                return redirect
        route = port.vhosts.lookup(head.host)
        if route is None:
            raise NoRoute(f"no virtual host for {head.host[:HOST_SHOWN]!r} on gateway port {self.port}")
        rule = logical.http_rule(route, head.host, head, self.caller)
        if rule.local is not None:
            return rule.local
        mesh = self.mesh
        entry, host, subset, dest_port, policy = concrete.destination(mesh.source.table, route, rule, head.port)
        return endpoint.pick(entry, host, subset, dest_port, head, policy, mesh.locality)

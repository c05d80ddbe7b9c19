"""Gateway generator: one GatewayListeners (proto/gateway_xds.py) per registered gateway workload.

    build_gateways(state, previous) -> {workload id: GatewayListeners}

Istio's semantics (pilot/pkg/model/gateway.go MergeGateways, pilot/pkg/networking/core/gateway.go):
- A Gateway applies to a gateway workload when its `selector` labels are all among the workload's (any
  namespace: PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false); a Gateway without a selector applies to every gateway.
- Servers are merged per port, Gateways oldest first, servers in written order. The first server of a port
  sets its protocol; a later server with another protocol is dropped (HTTPS and TLS may share a port: SNI
  tells them apart), as is a later TLS server (HTTPS/TLS) repeating a host already served on the port.
- A VirtualService binds to a Gateway it names in `gateways` (`name` is in its own namespace,
  `namespace/name`, legacy `name.namespace`); a match's own `gateways` narrow the VirtualService's for that
  match (a gateway the VirtualService is not bound to is never reached), and a match `port` other than the Gateway port drops the match. It binds to a server when the
  server host's namespace part allows the VirtualService's namespace (`*`, `.` = the Gateway's, or the name)
  and a VirtualService host intersects the server's dnsName: the virtual host's domain is the more specific
  of the two (runtime/hostnames.py).
- Per port: virtual hosts for HTTP/HTTP2/GRPC and terminated HTTPS servers (several VirtualServices for one
  domain merged, oldest first, as Istio merges them at gateways), tls routes for PASSTHROUGH servers (by
  sniHosts), tcp routes for TCP servers and terminated TLS servers. Rules compile with routes.py's compiler.
Versions: the highest revision of the workload's registration, Gateways and VirtualServices that decided the
entry; an unchanged entry keeps its object (diff.keep_versions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proto.gateway import Server
from proto.gateway_xds import (
    SERVER_TLS_PASSTHROUGH, GatewayListeners, GatewayPortConfig, GatewayServer, ServerTls, TlsRule, VirtualHost,
)
from proto.networking import HTTPMatchRequest, L4MatchAttributes, TLSMatchAttributes
from proto.registry import Workload
from proto.routes import HttpRule, RouteConfig, TcpRule
from services.pilot.compile.endpoints import selects
from services.pilot.compile.routes import destinations, http_rule, tcp_rule
from services.pilot.compile.state import MeshState, Stored
from runtime.hostnames import fqdn, gateway_ref
from services.pilot.validate.values import effective_mode
from runtime.hostnames import intersection

HTTP_PROTOCOLS = ("HTTP", "HTTP2", "GRPC")


def gateway_names(names: list[str], namespace: str) -> set[str]:
    """`gateways:` entries as "namespace/name" (and "mesh")."""
    return {gateway_ref(name, namespace) for name in names}


@dataclass
class _Port:
    number: int
    protocol: str
    servers: list[tuple[Stored, Server]] = field(default_factory=list)
    tls_hosts: set[str] = field(default_factory=set)


def _merge(gateways: list[Stored]) -> dict[int, _Port]:
    ports: dict[int, _Port] = {}
    for stored in gateways:
        for server in stored.resource.spec.servers:
            protocol = server.port.protocol.upper()
            port = ports.setdefault(server.port.number, _Port(server.port.number, protocol))
            if port.protocol != protocol and {port.protocol, protocol} != {"HTTPS", "TLS"}:
                continue  # Istio drops a server that conflicts with the port's protocol
            hosts = {h.partition("/")[2].lower() if "/" in h else h.lower() for h in server.hosts}
            if protocol in ("HTTPS", "TLS"):
                if hosts & port.tls_hosts:
                    continue  # a duplicate SNI host on the port: the older server keeps it
                port.tls_hosts |= hosts
            port.servers.append((stored, server))
    return ports


def _server(stored: Stored, server: Server) -> GatewayServer:
    tls = None
    if server.tls is not None:
        t = server.tls
        tls = ServerTls(mode=effective_mode(t), https_redirect=bool(t.https_redirect),
                        credential_name=t.credential_name or "", server_certificate=t.server_certificate or "",
                        private_key=t.private_key or "", ca_certificates=t.ca_certificates or "",
                        subject_alt_names=list(t.subject_alt_names or []),
                        min_protocol_version="" if t.min_protocol_version in (None, "TLS_AUTO")
                        else t.min_protocol_version,
                        max_protocol_version="" if t.max_protocol_version in (None, "TLS_AUTO")
                        else t.max_protocol_version,
                        cipher_suites=list(dict.fromkeys(t.cipher_suites or [])))
    return GatewayServer(gateway=stored.source, port=server.port.number, protocol=server.port.protocol.upper(),
                         hosts=[h.partition("/")[2].lower() if "/" in h else h.lower() for h in server.hosts],
                         name=server.port.name or "", bind=server.bind or "", tls=tls)


def _domains(server: Server, gw: Stored, vs: Stored, suffix: str) -> list[str]:
    """The domains this VirtualService serves on this server: each VS host intersected with each server host
    whose namespace part allows the VirtualService's namespace."""
    vs_ns, gw_ns = vs.resource.metadata.namespace, gw.resource.metadata.namespace
    out: list[str] = []
    for written in server.hosts:
        ns, slash, dns = written.partition("/")
        if not slash:
            ns, dns = "*", written
        if ns not in ("*", vs_ns) and not (ns == "." and vs_ns == gw_ns):
            continue
        for host in vs.resource.spec.hosts:
            both = intersection(fqdn(host, vs_ns, suffix), dns)
            if both is not None and both not in out:
                out.append(both)
    return out


class _Binding:
    """Which matches of a VirtualService apply at one Gateway port."""

    def __init__(self, vs: Stored, gateway: str, port: int) -> None:
        self.namespace = vs.resource.metadata.namespace
        self.gateway, self.port = gateway, port

    def __call__(self, m: HTTPMatchRequest | L4MatchAttributes | TLSMatchAttributes) -> bool:
        if m.gateways and self.gateway not in gateway_names(m.gateways, self.namespace):
            return False
        return m.port is None or m.port == self.port


def _bound(vs: Stored, gateway: str) -> bool:
    """Only the VirtualService's own `gateways` bind it (Istio's getGatewayNames): a match naming a gateway the
    VirtualService is not bound to applies nowhere."""
    return gateway in gateway_names(vs.resource.spec.gateways or [], vs.resource.metadata.namespace)


def _port_config(port: _Port, virtual_services: list[Stored], suffix: str) -> tuple[GatewayPortConfig, int]:
    revision = 0
    vhosts: dict[str, tuple[list[HttpRule], list[Stored]]] = {}
    tls_routes: list[TlsRule] = []
    tcp_routes: list[TcpRule] = []
    for gw, server in port.servers:
        mode = effective_mode(server.tls) if server.tls is not None else ""
        protocol = server.port.protocol.upper()
        http = protocol in HTTP_PROTOCOLS or (protocol == "HTTPS" and mode != SERVER_TLS_PASSTHROUGH)
        passthrough = protocol in ("HTTPS", "TLS") and mode == SERVER_TLS_PASSTHROUGH
        for vs in virtual_services:
            if not _bound(vs, gw.source):
                continue
            domains = _domains(server, gw, vs, suffix)
            if not domains:
                continue
            applies = _Binding(vs, gw.source, port.number)
            ns, spec = vs.resource.metadata.namespace, vs.resource.spec
            revision = max(revision, vs.revision)
            if http:
                rules = [r for r in (http_rule(h, ns, suffix, applies) for h in spec.http) if r]
                for domain in domains:
                    entry = vhosts.setdefault(domain, ([], []))
                    if vs not in entry[1]:
                        entry[0].extend(rules)
                        entry[1].append(vs)
            elif passthrough:
                for tls in spec.tls:
                    matches = [m for m in tls.match if applies(m)]
                    sni = [s for m in matches for s in _sni(m, server, suffix, ns)]
                    if sni:
                        tls_routes.append(TlsRule(sni_hosts=list(dict.fromkeys(sni)), source=vs.source,
                                                  destinations=destinations(tls.route or [], ns, suffix)))
            else:  # TCP, or TLS terminated here
                tcp_routes.extend(r for r in (tcp_rule(t, ns, suffix, applies) for t in spec.tcp) if r)
    virtual_hosts = [VirtualHost(domains=[domain], route=RouteConfig(
        host=domain, version=max(v.revision for v in owners), source=owners[0].source, rules=rules))
        for domain, (rules, owners) in vhosts.items()]
    return GatewayPortConfig(port=port.number, servers=[_server(g, s) for g, s in port.servers],
                             virtual_hosts=virtual_hosts, tls_routes=tls_routes, tcp_routes=tcp_routes), revision


def _sni(match: TLSMatchAttributes, server: Server, suffix: str, namespace: str) -> list[str]:
    out = []
    for written in server.hosts:
        dns = written.partition("/")[2] if "/" in written else written
        for sni in match.sni_hosts:
            both = intersection(fqdn(sni, namespace, suffix), dns)
            if both is not None:
                out.append(both)
    return out


def gateway_listeners(workload_id: str, w: Workload, revision: int, gateways: list[Stored],
                      virtual_services: list[Stored], suffix: str) -> GatewayListeners:
    selected = [g for g in gateways if selects(g.resource.spec.selector, w.labels)]
    ports: list[GatewayPortConfig] = []
    version = max([revision, *(g.revision for g in selected)])
    for _, port in sorted(_merge(selected).items()):
        config, vs_revision = _port_config(port, virtual_services, suffix)
        ports.append(config)
        version = max(version, vs_revision)
    return GatewayListeners(workload=workload_id, version=version, namespace=w.namespace, service=w.service,
                            service_account=w.service_account, instance=w.instance,
                            gateways=[g.source for g in selected], ports=ports)


def build_gateways(state: MeshState) -> dict[str, GatewayListeners]:
    """Every registered gateway workload's listeners (versions as compiled: diff.keep_versions keeps old ones)."""
    gateways = state.of_kind("Gateway")
    bound = [vs for vs in state.of_kind("VirtualService") if any(g != "mesh" for g in vs.resource.spec.gateways or [])]
    return {wid: gateway_listeners(wid, w, revision, gateways, bound, state.domain_suffix)
            for wid, (w, revision) in sorted(state.workloads.items()) if w.gateway}

"""Opaque connections at the gateway: PASSTHROUGH servers (TLS not terminated, routed by SNI) and TCP servers.

    relay_factory(port, source, mesh, tcp)() -> asyncio.Protocol    one Relay (proxy/tcp/relay.py) per connection

PASSTHROUGH (Istio's "Ingress gateway without TLS termination" task): the ClientHello's SNI, peeked by the
TlsAcceptor (proxy/tls/acceptor.py) without consuming a byte, is matched against the port's tls routes'
sniHosts (exact, longest wildcard, `*`: proxy/gateway/hosts.py); the connection is relayed whole to a
destination picked by weight, whose own server terminates the client's TLS. No match (or no SNI): closed,
as Envoy closes a connection no filter chain matches (flag NR in the access log). TCP servers: the port's
first tcp route that matches the port and the gateway picks a destination by weight; so do TLS servers
that terminate here on a port with tcp routes only (the relay then carries the decrypted bytes). The destination's
endpoint is chosen by its cluster's balancer, with its circuit breaker and outlier detection, exactly as a
sidecar's tcp routes (MeshRouter.tcp_pick) do.
"""

from __future__ import annotations

import asyncio

from proxy.core.errors import HOST_SHOWN, NoCluster, NoRoute
from proxy.core.request import RequestHead
from proxy.core.target import Target
from proxy.gateway.router import CompiledSource
from proxy.outbound import endpoint
from proxy.outbound.route import CompiledTcpRule
from proxy.outbound.router import MeshRouter
from proxy.tcp.listener import TcpListener, _Refused
from proxy.tcp.relay import Relay


def pick(port: int, source: CompiledSource, mesh: MeshRouter, sni: str, client: str) -> Target:
    """Where an opaque connection to Gateway port `port` goes; raises NoRoute / NoCluster / NoHealthyUpstream."""
    compiled = source.gateway_compiled
    entry = compiled.ports.get(port) if compiled is not None else None
    if entry is None:
        raise NoRoute(f"no Gateway server for port {port} on this gateway")
    rule: CompiledTcpRule | None
    if entry.passthrough:
        rule = entry.sni_routes.lookup(sni) if sni else None
        if rule is None:
            raise NoRoute(f"no tls route of gateway port {port} matches SNI {sni[:HOST_SHOWN]!r}")
    else:
        rule = next((r for r in entry.tcp_rules if r.applies(port, mesh.caller)), None)
        if rule is None:
            raise NoRoute(f"no tcp route of gateway port {port} matches")
    dest = rule.pick()
    table = mesh.source.table
    cluster = table.clusters.get(dest.host)
    if cluster is None:
        raise NoCluster(f"gateway port {port} sends to {dest.host}, which has no cluster")
    dest_port = dest.port
    if dest_port is None:
        if len(cluster.ports) != 1:
            raise NoRoute(f"gateway port {port}: the route to {dest.host} names no port and it has "
                          f"{len(cluster.ports)}")
        (dest_port,) = cluster.ports
    head = RequestHead("", dest.host, dest_port, "", [], client)
    return endpoint.pick(cluster, dest.host, dest.subset or "", dest_port, head, None, mesh.locality)


def relay_factory(port: int, source: CompiledSource, mesh: MeshRouter, tcp: TcpListener) -> asyncio.Protocol:
    """A Relay's downstream protocol for one accepted connection, held by `tcp` (never bound itself: it keeps
    the relays, their bound, access log and metrics); the acceptor sets its `sni` before it is connected."""
    if tcp.max_connections and len(tcp.relays) >= tcp.max_connections:
        return _Refused(tcp)
    relay: Relay

    def choose(client: str) -> Target:
        return pick(port, source, mesh, relay.down.sni, client)

    relay = Relay(choose, tcp._closed, tcp._opened)
    return relay.down

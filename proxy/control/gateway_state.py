"""This gateway's own GatewayListeners entry, kept from pushes (ConfigState holds it; proxy/gateway/ serves it).

    own_gateway(push, workload_id, current) -> GatewayListeners | None
    gateway_dump(config) -> dict | None                                    for /config_dump (no keys: paths only)

Pilot pushes one entry per registered gateway workload (Push.gateways, keyed by its registration id, as
Push.security), an empty one when no Gateway selects it; a gateway keeps only its own. None: no entry yet
(pilot has not seen its registration), nothing is served on any Gateway port and it is not ready. Once held,
an entry is replaced only by a newer one: a removal or a snapshot without it means pilot no longer knows the
workload (its lease lapsed while the registry was away), not that no Gateway selects it (that is an empty
entry), so the edge keeps serving what it was given, as a sidecar keeps its security entry
(proxy/control/security_state.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proto.gateway_xds import GatewayListeners
from proto.xds import Push


def own_gateway(push: Push, workload_id: str, current: GatewayListeners | None) -> GatewayListeners | None:
    """The entry in force after `push`: the push's entry for `workload_id`, else `current` (module docstring: a
    removal never drops it)."""
    own = next((g for g in push.gateways if g.workload == workload_id), None)
    return own if own is not None else current


def gateway_dump(config: GatewayListeners | None) -> dict[str, Any] | None:
    """The ports, servers (hosts, protocol, TLS mode and where its certificate comes from: a credentialName or
    file paths, never their contents), virtual hosts by domain and source, tls and tcp routes."""
    if config is None:
        return None
    ports = []
    for port in config.ports:
        servers = []
        for s in port.servers:
            item: dict[str, Any] = {"gateway": s.gateway, "name": s.name, "protocol": s.protocol, "hosts": s.hosts}
            if s.tls is not None:
                item["tls"] = msgspec.to_builtins(s.tls)  # paths and names only: a push never carries keys
            servers.append(item)
        ports.append({"port": port.port, "servers": servers,
                      "virtual_hosts": [{"domains": v.domains, "source": v.route.source, "rules": len(v.route.rules)}
                                        for v in port.virtual_hosts],
                      "tls_routes": msgspec.to_builtins(port.tls_routes),
                      "tcp_routes": len(port.tcp_routes)})
    return {"workload": config.workload, "version": config.version, "namespace": config.namespace,
            "gateways": config.gateways, "ports": ports}

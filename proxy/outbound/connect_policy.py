"""Which CONNECT tunnels to a mesh host the outbound listener opens.

    check_opaque(table, fqdn, port, caller)   raises ConnectRefused unless fqdn:port is opaque TCP

Istio sends a connection to a service's HTTP port through its HTTP listener, which routes requests
(VirtualService http rules: faults, retries, mirrors, rewrites) and does not tunnel a CONNECT (Envoy
answers it 404: no route matches a path-less request). A CONNECT to such a port would skip all of that, so
it is refused with 403 and a message to send plain HTTP through the proxy instead. A port the mesh treats as
opaque TCP is tunnelled as before (tcp_pick): one the host's VirtualService has a tcp route for, or a TCP
port of the service (pilot's ClusterConfig.tcp_ports: a workload's --app-tcp ports, a ServiceEntry port
whose protocol, or name prefix as in Istio, is TCP, TLS, HTTPS, MONGO, MYSQL or REDIS).
"""

from __future__ import annotations

from typing import Any

from proxy.core.errors import ConnectRefused


def check_opaque(table: Any, fqdn: str, port: int, caller: Any) -> None:
    route = table.routes.get(fqdn)
    if route is not None and route.tcp and route.tcp_rule_for(port, caller) is not None:
        return
    entry = table.clusters.get(fqdn)
    if entry is not None and port in entry.config.tcp_ports:
        return
    raise ConnectRefused(f"CONNECT to {fqdn}:{port}, an HTTP port of the mesh, is not tunnelled: send plain HTTP "
                         f"through the proxy so the mesh's routing applies")

"""Refusing upstream connections that would loop back into this sidecar's own outbound path.

    OwnListeners(hosts, ports).loops(address, port)   True for an address:port that is one of ours

An app (or an SSRF in it) can ask the outbound listener for http://127.0.0.1:<outbound port>/ under
ALLOW_ANY, CONNECT to it, or a registry entry can name the sidecar's own outbound port: each request would
come back to the outbound listener and go out again, until PassthroughCluster's breaker is full of the
sidecar's own connections and every other outside request gets 503 UO. Istio avoids this with iptables
(traffic from the proxy's uid is not captured again); Isthmus has no capture, so it checks the RESOLVED
address when it connects (proxy/outbound/dns_cache.py, for passthrough, CONNECT and mesh endpoints alike):
a loopback, unspecified or own address (--address, the listeners' bind hosts) with a port whose listener
sends traffic out again (the outbound port, --tcp locals) fails at once with LoopDetected (508, flag LD;
Envoy has no analogue). The inbound, admin and --app-tcp ports end at the app or answer themselves, so a
connection to them is not a loop (and a service calling itself through the mesh lands on its own inbound
port): those stay allowed. An own address the host has on other interfaces (bind host 0.0.0.0) is only
known when given as --address. The listeners of the sidecar's DNS (proxy/dns/: a service's loopback address
at its ports) loop too, but only at their exact address:port (`exact`): another loopback address at a
service's port (an app on 127.0.0.1:9080) is someone else's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from proxy.core.errors import LoopDetected


class OwnListeners:
    __slots__ = ("hosts", "ports", "loop_ports", "exact")

    def __init__(self, hosts: Iterable[str], ports: Iterable[int], exact: Iterable[tuple[str, int]] = ()) -> None:
        self.hosts = frozenset(hosts)
        self.loop_ports = frozenset(port for port in ports if port)
        self.exact = frozenset(exact)
        self.ports = self.loop_ports | {port for _, port in self.exact}

    def loops(self, address: str, port: int) -> bool:
        if port not in self.ports:  # the common case: one set lookup
            return False
        if (address, port) in self.exact:
            return True
        if port not in self.loop_ports:
            return False
        if address in self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or ip.is_unspecified or str(ip) in self.hosts

    def check(self, address: str, port: int) -> None:
        """Raises LoopDetected when address:port is one of this sidecar's looping listeners."""
        if self.loops(address, port):
            raise LoopDetected(f"{address}:{port} is this sidecar's own listener: the request would loop")

"""The sidecar's DNS (`proxy run --dns-port N`), wired to its config and outbound listener.

    SidecarDns(port, source, router, http_state, make_tcp, namespace, domain_suffix)
        start() / stop()    the DNS server on 127.0.0.1:N, and the listeners' reconciler
        changed()           after every applied push (ConfigState.on_apply): reconcile soon

What a push changes is reconciled in one task, in this order: every service with ports (a cluster of the
table whose ClusterConfig lists ports, wildcard hosts excepted) gets its loopback address (addresses.py); the
router learns address -> service (so `Host: 127.240.3.7:9080` routes as reviews:9080); the listeners follow
(listeners.py); only then does DNS answer the new names, so an answer never names an address not yet bound.
Names of services gone stop resolving in that same step.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from proxy.dns.addresses import LoopbackAddresses
from proxy.dns.listeners import HTTP, TCP, Key, MakeTcp, ServiceListeners, Spec
from proxy.dns.names import NameForms
from proxy.dns.server import DnsServer
from proxy.http.listener_state import ServerState
from proxy.outbound.router import MeshRouter
from proxy.outbound.table import RoutingTable, TableSource
from runtime.log import get_logger

log = get_logger("proxy.dns")

DNS_HOST = "127.0.0.1"  # never another address: a DNS server reachable from the network is an amplifier


def services_of(table: RoutingTable) -> dict[str, list[tuple[int, str]]]:
    """FQDN -> [(port, HTTP or TCP)] for every service of `table` that lists ports; wildcard and IP hosts
    have no name to answer, port-less entries nothing to listen for."""
    out: dict[str, list[tuple[int, str]]] = {}
    for host, entry in table.clusters.items():
        config = entry.config
        if "*" in host or not config.ports and not config.tcp_ports or _is_ip(host):
            continue
        tcp = set(config.tcp_ports)
        out[host] = [(port, TCP if port in tcp else HTTP) for port in sorted(set(config.ports) | tcp)]
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SidecarDns:
    def __init__(self, port: int, source: TableSource, router: MeshRouter, http_state: ServerState,
                 make_tcp: MakeTcp, namespace: str, domain_suffix: str,
                 on_listeners: Callable[[Iterable[Key]], None] | None = None) -> None:
        """`on_listeners(keys)`: after each reconcile, the (address, port) bound now (the sidecar refuses
        upstream connections to them: proxy/outbound/self_loop.py)."""
        self.source, self.router = source, router
        self.on_listeners = on_listeners
        self.addresses = LoopbackAddresses()
        self.names = NameForms(namespace, domain_suffix)
        self.known: dict[str, str] = {}  # service FQDN -> the address DNS answers for it
        self.server = DnsServer(DNS_HOST, port, self.lookup)
        self.listeners = ServiceListeners(http_state, make_tcp)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def lookup(self, qname: str) -> tuple[str, bool]:
        """(address or "", authoritative) for a query name (proxy/dns/answer.py)."""
        known = self.known
        fqdn, authoritative = self.names.lookup(qname, known)
        return known.get(fqdn, ""), authoritative

    def changed(self) -> None:
        self._changed.set()

    async def start(self) -> None:
        await self.server.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.server.stop()
        await self.listeners.close_all()

    async def _run(self) -> None:
        self._changed.set()  # whatever the table already holds
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self.reconcile()
            except Exception:  # a bug of ours: logged, and the next push tries again
                log.exception("internal_error", error="dns reconcile failed")

    async def reconcile(self) -> None:
        services = services_of(self.source.table)
        addresses = self.addresses.update(services)
        self.known = {fqdn: address for fqdn, address in self.known.items() if fqdn in addresses}
        self.router.set_aliases({address: fqdn for fqdn, address in addresses.items()})
        wanted: dict[Key, Spec] = {(addresses[fqdn], port): (fqdn, kind)
                                   for fqdn, ports in services.items() if fqdn in addresses for port, kind in ports}
        await self.listeners.update(wanted)
        if self.on_listeners is not None:
            self.on_listeners(self.listeners.specs.keys())
        self.known = addresses

    def dump(self) -> dict[str, Any]:
        """/config_dump's `dns`: the port, each name's address, each listener (bound or why not)."""
        return {"port": self.port, "names": dict(sorted(self.known.items())), "listeners": self.listeners.dump(),
                "tcp_refused": self.server.refused, "udp_dropped": self.server.dropped}

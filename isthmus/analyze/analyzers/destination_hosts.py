"""IST0101 (host, mirror host, host:port) and IST0112: a VirtualService routing to a host that no registered
service and no ServiceEntry provides, or to a ServiceEntry port it does not declare (Istio's
virtualservice.DestinationHostAnalyzer, analyzers/virtualservice/destinationhosts.go). Needs the registry: a
host is a service when a workload of it is registered (`name.namespace.svc.cluster.local`)."""

from __future__ import annotations

from typing import Any, ClassVar

from isthmus.analyze.analyzers.destinations import mirror_destinations, route_destinations
from isthmus.analyze.context import Context, Entry
from isthmus.analyze.hosts import fqdn, matches


class DestinationHostAnalyzer:
    name: ClassVar[str] = "virtualservice.DestinationHostAnalyzer"
    description: ClassVar[str] = "Checks the destination hosts associated with each virtual service"
    codes: ClassVar[tuple[str, ...]] = ("IST0101", "IST0112")
    inputs: ClassVar[frozenset[str]] = frozenset({"registry"})

    def analyze(self, ctx: Context) -> None:
        services = ctx.service_hosts()
        entries = [(fqdn(h, se.namespace), se) for se in ctx.of("ServiceEntry") for h in se.spec.hosts]
        for vs in ctx.of("VirtualService"):
            for where in [*route_destinations(vs.spec), *mirror_destinations(vs.spec)]:
                host = fqdn(where.destination.host, vs.namespace)
                if host in services:
                    continue
                se = next((se for h, se in entries if matches(h, host)), None)
                if se is None:
                    ctx.report("IST0101", vs, "mirror host" if where.mirror else "host", where.destination.host)
                    continue
                _check_ports(ctx, vs, where.destination, se)


def _check_ports(ctx: Context, vs: Entry, destination: Any, se: Entry) -> None:
    ports = [p.number for p in se.spec.ports or []]
    if destination.port is None:
        if len(ports) > 1:
            ctx.report("IST0112", vs, destination.host, ports)
        return
    if destination.port.number not in ports:
        ctx.report("IST0101", vs, "host:port", f"{destination.host}:{destination.port.number}")

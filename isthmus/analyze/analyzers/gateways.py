"""IST0101 (gateway) and IST0132: a VirtualService naming a Gateway that does not exist, or none of whose hosts
that Gateway serves (Istio's virtualservice.GatewayAnalyzer, analyzers/virtualservice/gateways.go). Config only.

Istio also reports IST0132 for a Gateway that does not exist (it has no hosts); Isthmus reports only the IST0101
then: the missing Gateway is the one thing to fix."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context, Entry
from isthmus.analyze.hosts import gateway_ref, matches


class GatewayAnalyzer:
    name: ClassVar[str] = "virtualservice.GatewayAnalyzer"
    description: ClassVar[str] = "Checks the gateways associated with each virtual service"
    codes: ClassVar[tuple[str, ...]] = ("IST0101", "IST0132")
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        for vs in ctx.of("VirtualService"):
            for name in vs.spec.gateways or []:
                ref = gateway_ref(name, vs.namespace)
                if ref == "mesh":
                    continue
                ns, _, gw_name = ref.partition("/")
                gw = ctx.find("Gateway", ns, gw_name)
                if gw is None:
                    ctx.report("IST0101", vs, "gateway", name)
                elif not _host_in_gateway(gw, vs.spec.hosts, vs.namespace):
                    ctx.report("IST0132", vs, vs.spec.hosts, f"{vs.namespace}/{vs.name}", ref)


def _host_in_gateway(gw: Entry, vs_hosts: list[str], vs_namespace: str) -> bool:
    """Whether a host of the VirtualService matches a host the Gateway exposes to the VirtualService's namespace
    (`ns/host`: `.` is the Gateway's namespace, `*` any; no `/`: any)."""
    for server in gw.spec.servers or []:
        for host in server.hosts or []:
            ns, slash, name = host.rpartition("/")
            if slash and ns not in ("*", vs_namespace) and not (ns == "." and gw.namespace == vs_namespace):
                continue
            if any(matches(name, h) for h in vs_hosts):
                return True
    return False

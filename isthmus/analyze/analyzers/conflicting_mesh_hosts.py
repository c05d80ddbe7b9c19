"""IST0109: two VirtualServices bound to the mesh gateway (no `gateways`, or `mesh` among them) define the same
host; which one a sidecar uses is undefined (Istio's virtualservice.ConflictingMeshGatewayHostsAnalyzer,
analyzers/virtualservice/conflictingmeshgatewayhosts.go). Isthmus has no VirtualService exportTo, so every
VirtualService is visible to every namespace: Istio's ExportToAllNamespaces case. Config only."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context, Entry
from isthmus.analyze.hosts import fqdn


class ConflictingMeshGatewayHostsAnalyzer:
    name: ClassVar[str] = "virtualservice.ConflictingMeshGatewayHostsAnalyzer"
    description: ClassVar[str] = ("Checks if multiple virtual services associated with the mesh gateway have "
                                  "conflicting hosts")
    codes: ClassVar[tuple[str, ...]] = ("IST0109",)
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        by_host: dict[str, list[Entry]] = {}
        for vs in ctx.of("VirtualService"):
            gateways = vs.spec.gateways or []
            if gateways and "mesh" not in gateways:
                continue
            for host in dict.fromkeys(fqdn(h, vs.namespace) for h in vs.spec.hosts):
                by_host.setdefault(host, []).append(vs)
        reported: set[tuple[str, str]] = set()
        for host, group in sorted(by_host.items()):
            if len(group) < 2:
                continue
            names = ",".join(sorted(f"{vs.namespace}/{vs.name}" for vs in group))
            for vs in group:
                if (vs.namespace, vs.name) not in reported:  # once per VirtualService, as Istio
                    reported.add((vs.namespace, vs.name))
                    ctx.report("IST0109", vs, names, f"*/{host}")  # Istio's ScopedFqdn: exported to all

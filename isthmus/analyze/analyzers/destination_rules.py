"""IST0101 (host+subset in destinationrule): a VirtualService routing (or mirroring) to a subset that no
DestinationRule of its host defines: 503 NC on every proxy (Istio's virtualservice.DestinationRuleAnalyzer,
analyzers/virtualservice/destinationrules.go). Config only."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.analyzers.destinations import mirror_destinations, route_destinations
from isthmus.analyze.context import Context
from isthmus.analyze.hosts import fqdn


class DestinationRuleAnalyzer:
    name: ClassVar[str] = "virtualservice.DestinationRuleAnalyzer"
    description: ClassVar[str] = "Checks the destination rules associated with each virtual service"
    codes: ClassVar[tuple[str, ...]] = ("IST0101",)
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        defined = {(fqdn(dr.spec.host, dr.namespace), s.name) for dr in ctx.of("DestinationRule")
                   for s in dr.spec.subsets or []}
        for vs in ctx.of("VirtualService"):
            for where in [*route_destinations(vs.spec), *mirror_destinations(vs.spec)]:
                d = where.destination
                if d.subset and (fqdn(d.host, vs.namespace), d.subset) not in defined:
                    reftype = "mirror+subset in destinationrule" if where.mirror else "host+subset in destinationrule"
                    ctx.report("IST0101", vs, reftype, f"{d.host}+{d.subset}")

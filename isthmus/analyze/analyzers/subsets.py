"""IST0174 and IST0173: a DestinationRule whose host matches no service of the mesh (no registered workload's
service, no ServiceEntry host), and a subset of it whose labels no workload of that service carries: requests
routed to it get 503 UH (Istio's destinationrule.PodNotSelectedAnalyzer, analyzers/destinationrule/subset.go;
pods are Isthmus's registered workloads, and a ServiceEntry's inline endpoints and the WorkloadEntries its
workloadSelector picks). A ServiceEntry with neither (DNS names outside the mesh) is not checked for subsets.
Needs the registry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from isthmus.analyze.context import Context, Entry
from isthmus.analyze.hosts import fqdn, matches


class SubsetSelectAnalyzer:
    name: ClassVar[str] = "destinationrule.SubsetSelectPodAnalyzer"
    description: ClassVar[str] = "Checks if workloads are selected by subsets in destination rules"
    codes: ClassVar[tuple[str, ...]] = ("IST0173", "IST0174")
    inputs: ClassVar[frozenset[str]] = frozenset({"registry"})

    def analyze(self, ctx: Context) -> None:
        services = ctx.service_hosts()
        entries = [(fqdn(h, se.namespace), se) for se in ctx.of("ServiceEntry") for h in se.spec.hosts]
        for dr in ctx.of("DestinationRule"):
            host = fqdn(dr.spec.host, dr.namespace)
            if host in services:
                labels = [w.labels for w in ctx.workloads_of(host)]
            else:
                se = next((se for h, se in entries if matches(h, host)), None)
                if se is None and not any(matches(host, s) for s in services):
                    ctx.report("IST0174", dr, dr.spec.host)
                    continue
                if se is None or "*" in host:
                    continue
                labels = _entry_labels(ctx, se)
                if labels is None:
                    continue
            for subset in dr.spec.subsets or []:
                if not any(_selects(subset.labels, have) for have in labels):
                    ctx.report("IST0173", dr, subset.name)


def _selects(want: dict[str, str], have: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def _entry_labels(ctx: Context, se: Entry) -> list[dict[str, str]] | None:
    """The labels of a ServiceEntry's endpoints, None when it has none to select (hosts resolved by DNS)."""
    selector = se.spec.workload_selector
    if selector is not None:
        found: Iterable[Entry] = (we for we in ctx.of("WorkloadEntry")
                                  if we.namespace == se.namespace and _selects(selector.labels, we.spec.labels))
        return [{**we.spec.labels} for we in found]
    if se.spec.endpoints:
        return [e.labels for e in se.spec.endpoints]
    return None

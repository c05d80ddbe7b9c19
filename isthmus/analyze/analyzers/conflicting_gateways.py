"""IST0145: two Gateways with the same workload selector expose the same host on the same port (and bind); which
one serves it is undefined (Istio's gateway.ConflictingGatewayAnalyzer, analyzers/gateway/conflictinggateway.go,
with pilot's CheckDuplicates: the same host string with the same bind). Gateways with equal selectors always
pick the same workloads; with different selectors, when the registry is read, they conflict if a registered
workload carries both (Istio compares such selectors through the pods both select)."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context, Entry


def selector_text(selector: dict[str, str]) -> str:
    """Kubernetes' labels.Selector.String(): `k1=v1,k2=v2`, keys sorted."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


class ConflictingGatewayAnalyzer:
    name: ClassVar[str] = "gateway.ConflictingGatewayAnalyzer"
    description: ClassVar[str] = "Checks a gateway's selector, port number and hosts"
    codes: ClassVar[tuple[str, ...]] = ("IST0145",)
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        # port -> gateway "ns/name" -> {host: bind}
        known: dict[int, dict[str, dict[str, str]]] = {}
        selectors = {_full(gw): gw.spec.selector for gw in ctx.of("Gateway")}
        for gw in ctx.of("Gateway"):
            for server in gw.spec.servers or []:
                hosts = known.setdefault(server.port.number, {})
                hosts.setdefault(_full(gw), {}).update({h: server.bind or "" for h in server.hosts})
        labels = [w.labels for w in ctx.inputs.workloads] if "registry" in ctx.inputs.available else []

        def same_workloads(a: dict[str, str], b: dict[str, str]) -> bool:
            return a == b or any(_selects(a, have) and _selects(b, have) for have in labels)

        for gw in ctx.of("Gateway"):
            selector = selector_text(gw.spec.selector)
            for server in gw.spec.servers or []:
                others = known.get(server.port.number, {})
                conflicting = sorted(name for name, hosts in others.items() if name != _full(gw)
                                     and same_workloads(gw.spec.selector, selectors[name]) and any(
                                         hosts.get(h) == (server.bind or "") for h in server.hosts if h in hosts))
                if conflicting:
                    ctx.report("IST0145", gw, ",".join(conflicting), selector, str(server.port.number),
                               ",".join(server.hosts))


def _selects(want: dict[str, str], have: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def _full(gw: Entry) -> str:
    return f"{gw.namespace}/{gw.name}"

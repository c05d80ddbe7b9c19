"""IST0145: two Gateways with the same workload selector expose the same host on the same port (and bind); which
one serves it is undefined (Istio's gateway.ConflictingGatewayAnalyzer, analyzers/gateway/conflictinggateway.go,
with pilot's CheckDuplicates: the same host string with the same bind). Istio also compares selectors that are
subsets of each other through the pods both select; Isthmus compares equal selectors only. Config only."""

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
        # (selector, port) -> gateway "ns/name" -> {host: bind}
        known: dict[tuple[str, int], dict[str, dict[str, str]]] = {}
        for gw in ctx.of("Gateway"):
            for server in gw.spec.servers or []:
                hosts = known.setdefault((selector_text(gw.spec.selector), server.port.number), {})
                hosts.setdefault(_full(gw), {}).update({h: server.bind or "" for h in server.hosts})
        for gw in ctx.of("Gateway"):
            selector = selector_text(gw.spec.selector)
            for server in gw.spec.servers or []:
                others = known.get((selector, server.port.number), {})
                conflicting = sorted(name for name, hosts in others.items() if name != _full(gw) and any(
                    hosts.get(h) == (server.bind or "") for h in server.hosts if h in hosts))
                if conflicting:
                    ctx.report("IST0145", gw, ",".join(conflicting), selector, str(server.port.number),
                               ",".join(server.hosts))


def _full(gw: Entry) -> str:
    return f"{gw.namespace}/{gw.name}"

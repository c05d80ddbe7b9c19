"""IST0177: ServiceEntries that define the same host and port with different protocols; which protocol the
sidecars use is undefined (Istio's serviceentry.ConflictingServiceEntryProtocolAnalyzer,
analyzers/serviceentry/conflictingserviceentries.go). Isthmus has no ServiceEntry exportTo: every ServiceEntry is
visible to every namespace. Config only."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context, Entry


class ConflictingServiceEntryProtocolAnalyzer:
    name: ClassVar[str] = "serviceentry.ConflictingServiceEntryProtocolAnalyzer"
    description: ClassVar[str] = "Checks if multiple ServiceEntries define the same host and port with different protocols"
    codes: ClassVar[tuple[str, ...]] = ("IST0177",)
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        index: dict[tuple[str, int], list[tuple[str, Entry]]] = {}
        for se in ctx.of("ServiceEntry"):
            for host in se.spec.hosts:
                for port in se.spec.ports or []:
                    index.setdefault((host, port.number), []).append(((port.protocol or "").upper(), se))
        reported: set[tuple[str, str]] = set()
        for (host, port), entries in sorted(index.items()):
            protocols = sorted({protocol for protocol, _ in entries})
            if len(protocols) < 2:
                continue
            names = ", ".join(sorted({f"{se.namespace}/{se.name}" for _, se in entries}))
            for _, se in entries:
                if (se.namespace, se.name) not in reported:
                    reported.add((se.namespace, se.name))
                    ctx.report("IST0177", se, names, host, port, ", ".join(protocols))

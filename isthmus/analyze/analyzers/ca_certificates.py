"""IST0128 and IST0129: a DestinationRule originating TLS (SIMPLE or MUTUAL) without caCertificates, at the
top level or for a port: the sidecar then does not verify the server's certificate (Istio's
destinationrule.CaCertificateAnalyzer, analyzers/destinationrule/ca-certificates.go). Config only."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context

ORIGINATING = ("SIMPLE", "MUTUAL")


class CaCertificateAnalyzer:
    name: ClassVar[str] = "destinationrule.CaCertificateAnalyzer"
    description: ClassVar[str] = "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL"
    codes: ClassVar[tuple[str, ...]] = ("IST0128", "IST0129")
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        for dr in ctx.of("DestinationRule"):
            policy = dr.spec.traffic_policy
            if policy is None:
                continue
            full = f"{dr.namespace}/{dr.name}"
            tls = policy.tls
            if tls is not None and tls.mode in ORIGINATING and not tls.ca_certificates:
                ctx.report("IST0128", dr, full, dr.namespace, tls.mode, dr.spec.host)
            for setting in policy.port_level_settings or []:
                tls = setting.tls
                if tls is not None and tls.mode in ORIGINATING and not tls.ca_certificates:
                    port = f"number:{setting.port.number}" if setting.port is not None else ""
                    ctx.report("IST0129", dr, full, dr.namespace, tls.mode, dr.spec.host, port)

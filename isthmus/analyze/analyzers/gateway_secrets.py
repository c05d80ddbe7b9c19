"""IST0101 (credentialName): a Gateway server whose TLS credentialName names no secret in the ca's secret store
(Istio's gateway.SecretAnalyzer, analyzers/gateway/secret.go). Istio looks in the namespace of the gateway
workload its selector picks; an Isthmus gateway reads secrets of its own namespace, which is the Gateway's in
the usual layout, so the Gateway's namespace is where it looks. Needs the ca's secret list (`isthmus get
secrets -A`)."""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import Context


class SecretAnalyzer:
    name: ClassVar[str] = "gateway.SecretAnalyzer"
    description: ClassVar[str] = "Checks a gateway's referenced secrets for correctness"
    codes: ClassVar[tuple[str, ...]] = ("IST0101",)
    inputs: ClassVar[frozenset[str]] = frozenset({"secrets"})

    def analyze(self, ctx: Context) -> None:
        secrets = ctx.inputs.secrets
        for gw in ctx.of("Gateway"):
            for server in gw.spec.servers or []:
                name = server.tls.credential_name if server.tls is not None else None
                if name and (gw.namespace, name) not in secrets:
                    ctx.report("IST0101", gw, "credentialName", name)

"""IST0101 (credentialName): a Gateway server whose TLS credentialName names no secret in the ca's secret store
(Istio's gateway.SecretAnalyzer, analyzers/gateway/secret.go). A gateway reads the secrets of its own
namespace, so the secret is looked for where Istio's getGatewayNamespace looks: the namespace of the registered
gateway workloads the Gateway's selector picks when they are all in one (the demo's Gateway is in `default`, its
gateway and secret in `istio-system`), else the Gateway's own namespace (also without the registry). Needs the
ca's secret list (`isthmus get secrets -A`)."""

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
            namespace = _gateway_namespace(ctx, gw.namespace, gw.spec.selector or {})
            for server in gw.spec.servers or []:
                name = server.tls.credential_name if server.tls is not None else None
                if name and (namespace, name) not in secrets:
                    ctx.report("IST0101", gw, "credentialName", name)


def _gateway_namespace(ctx: Context, own: str, selector: dict[str, str]) -> str:
    """The one namespace of the registered gateways `selector` picks (an empty one picks every gateway, as pilot
    does), else `own` (none, several namespaces, or no registry read)."""
    namespaces = {w.namespace for w in ctx.inputs.workloads
                  if w.gateway and all(w.labels.get(k) == v for k, v in selector.items())}
    return namespaces.pop() if len(namespaces) == 1 else own

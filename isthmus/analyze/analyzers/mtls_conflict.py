"""IST0113: a DestinationRule whose client TLS mode contradicts the PeerAuthentication in effect at its host's
workloads: DISABLE, SIMPLE or MUTUAL (no Istio mTLS) against STRICT (the server refuses plaintext and foreign
certificates), or ISTIO_MUTUAL against DISABLE (the server expects plaintext). Every request then fails.
Istio's auth.MTLSAnalyzer checked this until 1.5 (removed in istio/istio#22458 with auto mTLS; the code
retired in 1.21, #48599); Isthmus keeps the code and its wording for the same check.

The policy in effect is Istio's: a PeerAuthentication whose selector matches the workloads (when the registry
is read), else the namespace's without a selector, else the mesh's (root namespace, ISTHMUS_ROOT_NAMESPACE,
default istio-system); UNSET inherits from the next. A DestinationRule port-level setting is compared with the
PeerAuthentication's portLevelMtls for the same port number. Config only (workload selectors need the registry).
"""

from __future__ import annotations

from typing import ClassVar

from isthmus.analyze.context import SUFFIX, Context, Entry
from isthmus.analyze.hosts import fqdn


class MTLSPolicyConflictAnalyzer:
    name: ClassVar[str] = "auth.MTLSPolicyConflictAnalyzer"
    description: ClassVar[str] = "Checks DestinationRule TLS modes against the PeerAuthentication of their hosts"
    codes: ClassVar[tuple[str, ...]] = ("IST0113",)
    inputs: ClassVar[frozenset[str]] = frozenset()

    def analyze(self, ctx: Context) -> None:
        root = ctx.inputs.root_namespace
        for dr in ctx.of("DestinationRule"):
            policy = dr.spec.traffic_policy
            host = fqdn(dr.spec.host, dr.namespace)
            if policy is None or not host.endswith("." + SUFFIX) or host.count(".") != 4:
                continue  # only a mesh service's host names its namespace
            namespace = host.split(".")[1]
            chain = _policies(ctx, host, namespace, root)
            settings = [(None, policy.tls)] + [(p.port.number if p.port else None, p.tls)
                                                for p in policy.port_level_settings or []]
            for port, tls in settings:
                if tls is None or not tls.mode:
                    continue  # auto mTLS follows the server: no conflict
                mode, pa = _effective(chain, port)
                mtls = tls.mode == "ISTIO_MUTUAL"
                if pa is not None and ((not mtls and mode == "STRICT") or (mtls and mode == "DISABLE")):
                    target = host if port is None else f"{host}:{port}"
                    ctx.report("IST0113", dr, target, f"{dr.namespace}/{dr.name}", mtls,
                               f"{pa.namespace}/{pa.name}", mode)


def _policies(ctx: Context, host: str, namespace: str, root: str) -> list[Entry]:
    """The PeerAuthentications that apply to `host`'s workloads, most specific first."""
    pas = ctx.of("PeerAuthentication")
    chain: list[Entry] = []
    if "registry" in ctx.inputs.available:
        labels = [w.labels for w in ctx.workloads_of(host)]
        chain += [pa for pa in pas if pa.namespace == namespace and pa.spec.selector is not None
                  and pa.spec.selector.match_labels and labels
                  and all(all(l.get(k) == v for k, v in pa.spec.selector.match_labels.items()) for l in labels)]
    chain += [pa for pa in pas if pa.namespace == namespace and (pa.spec.selector is None
                                                                   or not pa.spec.selector.match_labels)]
    chain += [pa for pa in pas if pa.namespace == root and (pa.spec.selector is None
                                                              or not pa.spec.selector.match_labels)]
    return chain


def _effective(chain: list[Entry], port: int | None) -> tuple[str, Entry | None]:
    """The mode in effect and the PeerAuthentication that sets it (PERMISSIVE, None: nothing sets it)."""
    for pa in chain:
        levels = pa.spec.port_level_mtls or {}
        if port is not None and port in levels and levels[port].mode not in (None, "UNSET"):
            return levels[port].mode or "", pa
        if pa.spec.mtls is not None and pa.spec.mtls.mode not in (None, "UNSET"):
            return pa.spec.mtls.mode or "", pa
    return "PERMISSIVE", None

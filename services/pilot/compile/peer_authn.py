"""PeerAuthentication resolution: a workload's effective inbound mTLS mode, per port.

    PeerAuthn(state).resolve(namespace, labels) -> Effective(mode, ports, sources, revision)

Istio's rules (pilot/pkg/security/authn ComposePeerAuthentication, model.AuthenticationPolicies):
- three levels: mesh-wide (no selector, in the root namespace), namespace-wide (no selector, in the
  workload's namespace), workload (a selector with labels, in the workload's namespace, whose matchLabels
  the workload's labels include). A selector with no labels counts as no selector. A policy with a selector
  in the root namespace applies to nothing (Istio ignores it; `isthmus apply` warns);
- of several policies at one level, the oldest wins: lowest etcd create revision, then name, then namespace
  (Istio's creation time, then name, then namespace);
- the mode starts PERMISSIVE and each level that exists and is not UNSET replaces it, mesh first, so UNSET
  inherits the level above; portLevelMtls (workload level only) overrides per workload port, its UNSET
  taking the workload's resolved mode.
Built once per compile; resolve() is memoized per namespace where no workload policy exists, else per
(namespace, labels), since many workloads share both.
"""

from __future__ import annotations

from typing import NamedTuple

from proto.security import PeerAuthenticationSpec, UNSET
from proto.xds import MTLS_PERMISSIVE
from services.pilot.compile.state import MeshState, Stored


class Effective(NamedTuple):
    mode: str  # STRICT, PERMISSIVE or DISABLE
    ports: tuple[tuple[int, str], ...] = ()  # (workload port, mode) from portLevelMtls, sorted
    sources: tuple[str, ...] = ()  # "namespace/name" of the policies consulted, mesh first
    revision: int = 0  # the highest mod revision among them

    def mode_for(self, port: int) -> str:
        for number, mode in self.ports:
            if number == port:
                return mode
        return self.mode


DEFAULT = Effective(MTLS_PERMISSIVE)


def _selector(spec: PeerAuthenticationSpec) -> dict[str, str]:
    return dict(spec.selector.match_labels or {}) if spec.selector is not None else {}


def _mode(spec: PeerAuthenticationSpec) -> str:
    return (spec.mtls.mode if spec.mtls is not None else None) or UNSET


class PeerAuthn:
    """The PeerAuthentications of a MeshState, indexed by level."""

    def __init__(self, state: MeshState) -> None:
        self.root = state.root_namespace
        self.mesh: Stored | None = None
        self.namespaces: dict[str, Stored] = {}  # namespace -> its namespace-wide policy
        self.selecting: dict[str, list[Stored]] = {}  # namespace -> its workload policies, oldest first
        policies = state.resources.get("PeerAuthentication", {}).values()
        for stored in sorted(policies, key=lambda stored: stored.policy_order):
            namespace = stored.resource.metadata.namespace
            if _selector(stored.resource.spec):
                if namespace != self.root:  # a selector in the root namespace selects nothing, as in Istio
                    self.selecting.setdefault(namespace, []).append(stored)
            elif namespace == self.root:
                if self.mesh is None:
                    self.mesh = stored
            else:
                self.namespaces.setdefault(namespace, stored)
        self._memo: dict[tuple[str, frozenset[tuple[str, str]]], Effective] = {}
        self._by_namespace: dict[str, Effective] = {}  # namespaces without workload policies

    def resolve(self, namespace: str, labels: dict[str, str]) -> Effective:
        """The effective policy of a workload in `namespace` with `labels`."""
        if self.mesh is None and not self.namespaces and not self.selecting:
            return DEFAULT  # no policy anywhere (the common case until one is applied)
        if namespace not in self.selecting:  # labels cannot matter here
            found = self._by_namespace.get(namespace)
            if found is None:
                found = self._by_namespace[namespace] = self._resolve(namespace, labels)
            return found
        key = (namespace, frozenset(labels.items()))
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._resolve(namespace, labels)
        return found

    def _resolve(self, namespace: str, labels: dict[str, str]) -> Effective:
        workload = next((s for s in self.selecting.get(namespace, ())
                         if all(labels.get(k) == v for k, v in _selector(s.resource.spec).items())), None)
        levels = [s for s in (self.mesh, self.namespaces.get(namespace), workload) if s is not None]
        if not levels:
            return DEFAULT
        mode = MTLS_PERMISSIVE
        for stored in levels:
            given = _mode(stored.resource.spec)
            if given != UNSET:
                mode = given
        ports: tuple[tuple[int, str], ...] = ()
        if workload is not None:
            port_level = workload.resource.spec.port_level_mtls or {}
            ports = tuple(sorted((port, mode if (m.mode or UNSET) == UNSET else m.mode)  # type: ignore[misc]
                                 for port, m in port_level.items()))
        return Effective(mode, ports, tuple(s.source for s in levels), max(s.revision for s in levels))

"""What the compiler reads: stored config resources and registered workloads, each with its etcd revision.

Pilot's store watcher builds a MeshState and hands it to compile_mesh(); the compiler never touches
etcd. "Oldest wins" conflicts (two DestinationRules or VirtualServices claiming one host) are decided
by `Stored.created` (etcd create revision) when known, else by the mod revision, then namespace/name,
the way Istio orders by creation time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from proto.registry import Workload
from proto.resources import Resource


class Stored(NamedTuple):
    resource: Resource
    revision: int  # etcd mod revision
    created: int = 0  # etcd create revision; 0: unknown, `revision` stands in

    @property
    def age(self) -> tuple[int, str, str]:
        meta = self.resource.metadata
        return (self.created or self.revision, meta.namespace, meta.name)

    @property
    def policy_order(self) -> tuple[int, str, str]:
        """Istio's order among policies: the oldest first, then by name, then namespace."""
        meta = self.resource.metadata
        return (self.created or self.revision, meta.name, meta.namespace)

    @property
    def selector_labels(self) -> dict[str, str]:
        """A policy's workload selector (`spec.selector.matchLabels`); {} without one."""
        selector = getattr(self.resource.spec, "selector", None)  # type: ignore[attr-defined]
        return dict(selector.match_labels or {}) if selector is not None else {}

    @property
    def source(self) -> str:
        return f"{self.resource.metadata.namespace}/{self.resource.metadata.name}"


@dataclass
class MeshState:
    resources: dict[str, dict[tuple[str, str], Stored]] = field(default_factory=dict)  # kind -> (ns, name)
    workloads: dict[str, tuple[Workload, int]] = field(default_factory=dict)  # id -> (workload, revision)
    domain_suffix: str = "svc.cluster.local"  # `reviews` in `prod` -> reviews.prod.svc.cluster.local
    revision: int = 0  # the etcd revision this state reflects (versions changes whose inputs were deleted)
    trust_domain: str = "cluster.local"  # identities are spiffe://<trust_domain>/ns/<ns>/sa/<sa>
    root_namespace: str = "istio-system"  # where mesh-wide policies live (meshConfig.rootNamespace)

    def of_kind(self, kind: str) -> list[Stored]:
        """Stored resources of one kind, oldest first."""
        return sorted(self.resources.get(kind, {}).values(), key=lambda s: s.age)

    @classmethod
    def build(
        cls,
        resources: Mapping[tuple[str, str, str], Stored | tuple[Resource, int]],
        workloads: Mapping[str, tuple[Workload, int]] | None = None,
        domain_suffix: str = "svc.cluster.local",
        revision: int = 0,
        trust_domain: str = "cluster.local",
        root_namespace: str = "istio-system",
    ) -> "MeshState":
        """From {(kind, namespace, name): (resource, revision) or Stored} and {id: (workload, revision)}."""
        by_kind: dict[str, dict[tuple[str, str], Stored]] = {}
        for (kind, namespace, name), item in resources.items():
            stored = item if isinstance(item, Stored) else Stored(item[0], item[1])
            by_kind.setdefault(kind, {})[(namespace, name)] = stored
        return cls(resources=by_kind, workloads=dict(workloads or {}), domain_suffix=domain_suffix,
                   revision=revision, trust_domain=trust_domain, root_namespace=root_namespace)

"""Security generator: one WorkloadSecurity per registered workload, keyed by its id (the proxy's id).

It carries the workload's effective PeerAuthentication (peer_authn.py): its mode, and per workload port the
modes portLevelMtls sets; the AuthorizationPolicies and RequestAuthentication jwtRules that apply to it
(authz.py); the Telemetry resources that apply to it, merged (telemetry.py); and the probe of the
WorkloadGroup it is bound to (Workload.workload_group, a group of its namespace). A workload none of these
applies to gets the default entry (PERMISSIVE, Istio's default; no authorization, no JWT, the mesh's
telemetry defaults), not none: a sidecar reads a missing entry as "pilot has not compiled my registration
yet" and admits nothing until its entry arrives (proxy/inbound/local_app.py), so it never serves between its
first push and pilot seeing it register with none of the policies that apply to it. A workload that leaves
the registry loses its entry (Push.removed_security); its sidecar keeps the last one it had
(proxy/control/security_state.py).
Its version is the highest revision of the workload's registration and of the policies that decided it; an
entry whose content did not change keeps its object and version, and a changed one gets a version above its
old one even when what changed was a deletion or a jwksUri's fetched keys (as diff.keep_versions does for
clusters and routes).
"""

from __future__ import annotations

import msgspec

from proto.workload_group import Probe, compile_probe
from proto.xds import MTLS_PERMISSIVE, WorkloadSecurity
from services.pilot.compile.authz import Authz
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.state import MeshState, Stored
from services.pilot.compile.telemetry import Telemetries


def build_security(state: MeshState, peers: PeerAuthn | None = None,
                   previous: dict[str, WorkloadSecurity] | None = None,
                   authz: Authz | None = None, telemetry: Telemetries | None = None) -> dict[str, WorkloadSecurity]:
    """`authz`: the state's authorization and JWT policies, indexed once (built here, without a JWKS resolver,
    when None); `telemetry`: its Telemetry resources (built here when None)."""
    peers = peers if peers is not None else PeerAuthn(state)
    authz = authz if authz is not None else Authz(state)
    telemetry = telemetry if telemetry is not None else Telemetries(state)
    previous = previous or {}
    groups = state.resources.get("WorkloadGroup", {})
    out: dict[str, WorkloadSecurity] = {}
    for workload_id, (w, revision) in state.workloads.items():
        effective = peers.resolve(w.namespace, w.labels)
        applied = authz.resolve(w.namespace, w.labels)
        observed = telemetry.resolve(w.namespace, w.labels)
        probe, group_revision = _probe(groups, w.namespace, w.workload_group)
        entry = WorkloadSecurity(workload=workload_id, version=0, namespace=w.namespace, service=w.service,
                                 service_account=w.service_account, instance=w.instance,
                                 mtls_mode=effective.mode if effective.sources else MTLS_PERMISSIVE,
                                 port_mtls=dict(effective.ports), peer_authentications=list(effective.sources),
                                 authorization=list(applied.authorization), jwt=list(applied.jwt),
                                 telemetry=observed.policy, probe=probe)
        prev = previous.get(workload_id)
        if prev is not None and msgspec.structs.replace(prev, version=0) == entry:
            out[workload_id] = prev
            continue
        version = max(revision, effective.revision, applied.revision, observed.revision, group_revision)
        if prev is not None and version <= prev.version:  # what changed was deleted (or fetched): it is newer
            version = max(state.revision, prev.version + 1)
        out[workload_id] = msgspec.structs.replace(entry, version=version)
    return out


def _probe(groups: dict[tuple[str, str], Stored], namespace: str, name: str) -> tuple[Probe | None, int]:
    """The pushed probe of WorkloadGroup `namespace/name` and its revision; (None, 0) without one."""
    stored = groups.get((namespace, name)) if name else None
    if stored is None or stored.resource.spec.probe is None:  # type: ignore[attr-defined]
        return None, 0
    return compile_probe(stored.resource.spec.probe, stored.source), stored.revision  # type: ignore[attr-defined]

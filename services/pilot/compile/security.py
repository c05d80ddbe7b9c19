"""Security generator: one WorkloadSecurity per registered workload whose policy is not the default, keyed by
its id (the proxy's id).

It carries the workload's effective PeerAuthentication (peer_authn.py): its mode, and per workload port the
modes portLevelMtls sets; the AuthorizationPolicies and RequestAuthentication jwtRules that apply to it
(authz.py); and the Telemetry resources that apply to it, merged (telemetry.py). A workload none of the four
kinds applies to gets no entry: no entry means PERMISSIVE (Istio's default), no authorization, no JWT and the
mesh's telemetry defaults, so a mesh without policies pushes nothing more than before, and deleting a
workload's last policy removes its entry (Push.removed_security): the sidecar drops it at once.
Its version is the highest revision of the workload's registration and of the policies that decided it; an entry whose content
did not change keeps its object and version, and a changed one gets a version above its old one even when
what changed was a deletion or a jwksUri's fetched keys (as diff.keep_versions does for clusters and routes).
"""

from __future__ import annotations

import msgspec

from proto.xds import MTLS_PERMISSIVE, WorkloadSecurity
from services.pilot.compile.authz import Authz
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.state import MeshState
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
    out: dict[str, WorkloadSecurity] = {}
    for workload_id, (w, revision) in state.workloads.items():
        effective = peers.resolve(w.namespace, w.labels)
        applied = authz.resolve(w.namespace, w.labels)
        observed = telemetry.resolve(w.namespace, w.labels)
        if not effective.sources and not applied.authorization and not applied.jwt and observed.policy is None:
            continue  # no policy applies: PERMISSIVE, no authorization, no JWT, default telemetry: no entry
        entry = WorkloadSecurity(workload=workload_id, version=0, namespace=w.namespace,
                                 mtls_mode=effective.mode if effective.sources else MTLS_PERMISSIVE,
                                 port_mtls=dict(effective.ports), peer_authentications=list(effective.sources),
                                 authorization=list(applied.authorization), jwt=list(applied.jwt),
                                 telemetry=observed.policy)
        prev = previous.get(workload_id)
        if prev is not None and msgspec.structs.replace(prev, version=0) == entry:
            out[workload_id] = prev
            continue
        version = max(revision, effective.revision, applied.revision, observed.revision)
        if prev is not None and version <= prev.version:  # what changed was deleted (or fetched): it is newer
            version = max(state.revision, prev.version + 1)
        out[workload_id] = msgspec.structs.replace(entry, version=version)
    return out

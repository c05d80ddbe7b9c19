"""Security generator: one WorkloadSecurity per registered workload, keyed by its id (the proxy's id).

Today it carries the workload's effective PeerAuthentication (peer_authn.py): its mode, and per workload
port the modes portLevelMtls sets. Its version is the highest revision of the workload's registration and
of the policies that decided it (diff.keep_versions keeps it when only an unrelated revision moved).
"""

from __future__ import annotations

from proto.xds import WorkloadSecurity
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.state import MeshState


def build_security(state: MeshState, peers: PeerAuthn | None = None) -> dict[str, WorkloadSecurity]:
    peers = peers if peers is not None else PeerAuthn(state)
    out: dict[str, WorkloadSecurity] = {}
    for workload_id, (w, revision) in state.workloads.items():
        effective = peers.resolve(w.namespace, w.labels)
        out[workload_id] = WorkloadSecurity(workload=workload_id, version=max(revision, effective.revision),
                                            namespace=w.namespace, mtls_mode=effective.mode,
                                            port_mtls=dict(effective.ports),
                                            peer_authentications=list(effective.sources))
    return out

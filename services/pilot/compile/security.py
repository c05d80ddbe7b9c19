"""Security generator: one WorkloadSecurity per registered workload whose policy is not the default, keyed by
its id (the proxy's id).

Today it carries the workload's effective PeerAuthentication (peer_authn.py): its mode, and per workload
port the modes portLevelMtls sets. A workload no PeerAuthentication applies to gets no entry: no entry means
PERMISSIVE (Istio's default), so a mesh without policies pushes nothing more than before. Its version is the
highest revision of the workload's registration and of the policies that decided it; an entry whose content
did not change keeps its object and version, and a changed one gets a version above its old one even when
what changed was a deletion (as diff.keep_versions does for clusters and routes).
"""

from __future__ import annotations

from proto.xds import WorkloadSecurity
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.state import MeshState


def build_security(state: MeshState, peers: PeerAuthn | None = None,
                   previous: dict[str, WorkloadSecurity] | None = None) -> dict[str, WorkloadSecurity]:
    peers = peers if peers is not None else PeerAuthn(state)
    previous = previous or {}
    out: dict[str, WorkloadSecurity] = {}
    for workload_id, (w, revision) in state.workloads.items():
        effective = peers.resolve(w.namespace, w.labels)
        if not effective.sources:
            continue  # no policy applies: PERMISSIVE, said by the absence of an entry
        prev = previous.get(workload_id)
        ports = dict(effective.ports)
        if prev is not None and prev.namespace == w.namespace and prev.mtls_mode == effective.mode \
                and prev.port_mtls == ports and tuple(prev.peer_authentications) == effective.sources:
            out[workload_id] = prev
            continue
        version = max(revision, effective.revision)
        if prev is not None and version <= prev.version:  # what changed was deleted: the deletion is newer
            version = max(state.revision, prev.version + 1)
        out[workload_id] = WorkloadSecurity(workload=workload_id, version=version, namespace=w.namespace,
                                            mtls_mode=effective.mode, port_mtls=ports,
                                            peer_authentications=list(effective.sources))
    return out

"""Pilot's compiler: stored config + registered workloads (MeshState) -> proxy config, one generator
per resource kind (endpoints.py, clusters.py, routes.py, security.py with authz.py, gateway.py) and a content diff (diff.py)."""

from services.pilot.compile.diff import (
    compile_mesh, compile_security, compile_with_gateways, diff, diff_gateways, diff_security, keep_versions,
    same_content,
)
from services.pilot.compile.authz import Authz, JwksLookup
from services.pilot.compile.peer_authn import PeerAuthn
from services.pilot.compile.state import MeshState, Stored

__all__ = ["Authz", "JwksLookup", "MeshState", "PeerAuthn", "Stored", "compile_mesh", "compile_security",
           "compile_with_gateways", "diff", "diff_gateways", "diff_security",
           "keep_versions", "same_content"]

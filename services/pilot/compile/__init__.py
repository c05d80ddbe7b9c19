"""Pilot's compiler: stored config + registered workloads (MeshState) -> proxy config, one generator
per resource kind (endpoints.py, clusters.py, routes.py) and a content diff (diff.py)."""

from services.pilot.compile.diff import compile_mesh, diff, keep_versions, same_content
from services.pilot.compile.state import MeshState, Stored

__all__ = ["MeshState", "Stored", "compile_mesh", "diff", "keep_versions", "same_content"]

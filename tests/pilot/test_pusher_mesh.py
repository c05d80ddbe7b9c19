"""services/pilot/pusher.py: the mesh-wide settings ride on every push and snapshot."""

from __future__ import annotations

from proto.xds import MeshConfig, Push
from runtime.bus import decode
from services.pilot.compile import MeshState
from services.pilot.pusher import Pusher


def test_every_push_and_the_snapshot_carry_the_pilots_mesh_settings():
    pusher = Pusher(MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    state = MeshState()
    pushes = [pusher.new_epoch(), pusher.snapshot(), decode(pusher.snapshot_bytes(), Push)]
    delta = pusher.recompile(state, 1)
    pushes += [delta] if delta is not None else []
    assert all(p.mesh == MeshConfig(outbound_traffic_policy="REGISTRY_ONLY") for p in pushes)
    assert Pusher().snapshot().mesh == MeshConfig()  # ALLOW_ANY, Istio's default

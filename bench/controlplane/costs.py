"""What each step costs in CPU at N registered workloads, measured in-process on the real code:
pilot's compile (MeshState.build + compile_mesh + diff, i.e. Pusher.recompile) and push encode, a
full snapshot's encode, and on a proxy the decode + ConfigState.apply of a snapshot and of deltas.
No bus, no etcd: this isolates compute from fan-out and scheduling."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.controlplane import mesh
from proto.xds import Push
from proxy.control.config_state import ConfigState
from runtime.bus import decode, encode
from services.pilot.compile import MeshState, Stored
from services.pilot.pusher import Pusher
from services.pilot.validate import decode_documents


def _resources(text: str, revision: int) -> dict[tuple[str, str, str], Stored]:
    resources, errors, _ = decode_documents(text)
    if errors:
        raise ValueError(f"benchmark config does not validate: {errors}")
    return {(r.kind, r.metadata.namespace, r.metadata.name): Stored(r, revision, revision) for r in resources}


def _ms(values: list[float]) -> float:
    return round(1e3 * statistics.median(values), 3)


def measure(n: int, repeat: int = 9) -> dict[str, Any]:
    """Medians over `repeat` changes (compile also reports its max: GC pauses land there)."""
    revision = 10
    resources = _resources(mesh.destination_rule_yaml() + "---\n" + mesh.virtual_service_yaml(100, 0), revision)
    workloads = {mesh.proxy_id(i): (mesh.workload(i, n), revision) for i in range(n)}
    pusher = Pusher()
    pusher.recompile(MeshState.build(resources, workloads, mesh.DOMAIN_SUFFIX, revision), revision)
    encodes = []
    for _ in range(5):  # what pilot does for every snapshot request
        t = time.perf_counter()
        snapshot_bytes = encode(pusher.snapshot())
        encodes.append(time.perf_counter() - t)

    # pilot: a VirtualService change, then one workload of svc-0 registering; each time pilot rebuilds
    # its MeshState and recompiles the whole mesh (Pusher.recompile), then encodes the delta
    compile_vs, encode_vs, compile_ep = [], [], []
    deltas: list[tuple[str, bytes]] = []
    for i in range(repeat):
        revision += 1
        resources.update(_resources(mesh.virtual_service_yaml(*mesh.weights(i)), revision))
        t = time.perf_counter()
        push = pusher.recompile(MeshState.build(resources, workloads, mesh.DOMAIN_SUFFIX, revision), revision)
        compile_vs.append(time.perf_counter() - t)
        assert push is not None and push.routes
        t = time.perf_counter()
        deltas.append(("vs", encode(push)))
        encode_vs.append(time.perf_counter() - t)
        revision += 1
        extra = mesh.extra_workload(i)
        workloads[extra.id] = (extra, revision)
        t = time.perf_counter()
        push = pusher.recompile(MeshState.build(resources, workloads, mesh.DOMAIN_SUFFIX, revision), revision)
        compile_ep.append(time.perf_counter() - t)
        assert push is not None and push.clusters
        deltas.append(("ep", encode(push)))

    # a proxy: the snapshot, then the same deltas in order
    snapshot_decode, snapshot_apply = [], []
    for _ in range(3):
        t = time.perf_counter()
        decoded = decode(snapshot_bytes, Push)
        snapshot_decode.append(time.perf_counter() - t)
        proxy = ConfigState()
        t = time.perf_counter()
        proxy.apply(decoded)
        snapshot_apply.append(time.perf_counter() - t)
    timing: dict[str, list[float]] = {"vs_decode": [], "vs_apply": [], "ep_decode": [], "ep_apply": []}
    sizes: dict[str, list[int]] = {"vs": [], "ep": []}
    for kind, data in deltas:
        sizes[kind].append(len(data))
        t = time.perf_counter()
        delta = decode(data, Push)
        timing[f"{kind}_decode"].append(time.perf_counter() - t)
        t = time.perf_counter()
        proxy.apply(delta)
        timing[f"{kind}_apply"].append(time.perf_counter() - t)

    def us(key: str) -> float:
        return round(1e6 * statistics.median(timing[key]), 1)

    return {
        "n": n,
        "services": mesh.service_count(n),
        "pilot_compile_vs_change_ms": _ms(compile_vs),
        "pilot_compile_vs_change_max_ms": round(1e3 * max(compile_vs), 3),
        "pilot_compile_endpoint_change_ms": _ms(compile_ep),
        "pilot_encode_vs_push_ms": _ms(encode_vs),
        "vs_push_bytes": int(statistics.median(sizes["vs"])),
        "endpoint_push_bytes": int(statistics.median(sizes["ep"])),
        "pilot_snapshot_encode_ms": _ms(encodes),
        "snapshot_bytes": len(snapshot_bytes),
        "proxy_snapshot_decode_ms": _ms(snapshot_decode),
        "proxy_snapshot_apply_ms": _ms(snapshot_apply),
        "proxy_vs_delta_decode_us": us("vs_decode"),
        "proxy_vs_delta_apply_us": us("vs_apply"),
        "proxy_endpoint_delta_decode_us": us("ep_decode"),
        "proxy_endpoint_delta_apply_us": us("ep_apply"),
    }


if __name__ == "__main__":
    import json
    import sys

    for size in [int(a) for a in sys.argv[1:]] or [100, 1000, 5000]:
        print(json.dumps(measure(size)))

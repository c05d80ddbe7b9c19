"""services/pilot/compile/security.py: the probe of a workload's WorkloadGroup travels in its pushed entry."""

from __future__ import annotations

import textwrap

from proto.registry import Workload
from services.pilot.compile import MeshState, Stored, compile_security
from services.pilot.validate import decode_documents


def group(name: str = "reviews", namespace: str = "bookinfo", probe: str = "{httpGet: {port: 9080, path: /ready}}"):
    text = f"""
    apiVersion: networking.istio.io/v1
    kind: WorkloadGroup
    metadata: {{name: {name}, namespace: {namespace}}}
    spec:
      template: {{serviceAccount: reviews}}
      {"probe: " + probe if probe else ""}
    """
    resources, errors, _ = decode_documents(textwrap.dedent(text))
    assert errors == [], errors
    return resources[0]


def state(*groups_revs, workloads=(), revision: int = 0) -> MeshState:
    stored = {(g.kind, g.metadata.namespace, g.metadata.name): Stored(g, rev) for g, rev in groups_revs}
    return MeshState.build(stored, {w.id: (w, 2) for w in workloads}, revision=revision)


BOUND = Workload(id="vm-1", service="reviews", namespace="bookinfo", workload_group="reviews")
UNBOUND = Workload(id="vm-2", service="reviews", namespace="bookinfo")


def test_a_bound_workload_gets_its_groups_probe_and_an_unbound_one_nothing():
    out = compile_security(state((group(), 7), workloads=[BOUND, UNBOUND]))
    assert out["vm-2"].probe is None  # the default entry
    probe = out["vm-1"].probe
    assert (probe.source, probe.kind, probe.port, probe.path) == ("bookinfo/reviews", "http", 9080, "/ready")
    assert out["vm-1"].version == 7 and out["vm-1"].mtls_mode == "PERMISSIVE"


def test_a_group_without_a_probe_or_of_another_namespace_pushes_no_probe():
    assert compile_security(state((group(probe=""), 7), workloads=[BOUND]))["vm-1"].probe is None
    assert compile_security(state((group(namespace="other"), 7), workloads=[BOUND]))["vm-1"].probe is None
    other = Workload(id="vm-3", service="reviews", namespace="bookinfo", workload_group="ratings")
    assert compile_security(state((group(), 7), workloads=[other]))["vm-3"].probe is None


def test_a_changed_probe_gets_a_newer_version_and_a_deleted_one_a_newer_entry_without_it():
    first = compile_security(state((group(), 7), workloads=[BOUND]))
    same = compile_security(state((group(), 9), workloads=[BOUND]), previous=first)
    assert same["vm-1"] is first["vm-1"]  # content unchanged: the old object and version
    changed = compile_security(state((group(probe="{tcpSocket: {port: 22}}"), 11), workloads=[BOUND]),
                               previous=first)
    assert changed["vm-1"].probe.kind == "tcp" and changed["vm-1"].version == 11
    deleted = compile_security(state(workloads=[BOUND], revision=12), previous=changed)["vm-1"]
    assert (deleted.probe, deleted.version) == (None, 12)

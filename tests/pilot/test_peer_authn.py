"""services/pilot/compile/peer_authn.py and security.py: each workload's effective PeerAuthentication, and
its delivery in pushes (WorkloadSecurity per workload id)."""

from __future__ import annotations

import textwrap

import pytest

from proto.registry import Workload
from proto.xds import Push, WorkloadSecurity
from runtime.bus import decode
from services.pilot.compile import MeshState, PeerAuthn, Stored, compile_security
from services.pilot.pusher import Pusher
from services.pilot.validate import decode_documents


def pa(name: str, namespace: str, spec: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def state(*policies: tuple[str, int] | tuple[str, int, int], workloads=(), revision: int = 0,
          root: str = "istio-system") -> MeshState:
    """policies: (yaml, mod revision[, create revision])."""
    stored = {}
    for text, rev, *created in policies:
        resources, errors, _ = decode_documents(textwrap.dedent(text))
        assert errors == [], errors
        for res in resources:
            stored[(res.kind, res.metadata.namespace, res.metadata.name)] = Stored(res, rev, *created)
    return MeshState.build(stored, {w.id: (w, rev) for w, rev in workloads}, revision=revision, root_namespace=root)


FINANCE = {"app": "finance", "version": "v1"}
MESH_STRICT = pa("default", "istio-system", "{mtls: {mode: STRICT}}")
NS_DISABLE = pa("default", "foo", "{mtls: {mode: DISABLE}}")
NS_UNSET = pa("default", "foo", "{mtls: {mode: UNSET}}")
WL_PERMISSIVE = pa("finance", "foo", "{selector: {matchLabels: {app: finance}}, mtls: {mode: PERMISSIVE}}")
WL_UNSET_PORT = pa("finance", "foo", "{selector: {matchLabels: {app: finance}}, portLevelMtls: {8080: {mode: DISABLE}, 9090: {}}}")


def resolve(s: MeshState, namespace: str = "foo", labels: dict[str, str] = FINANCE):
    return PeerAuthn(s).resolve(namespace, labels)


def test_no_policy_means_permissive_as_istio():
    effective = resolve(state())
    assert (effective.mode, effective.ports, effective.sources) == ("PERMISSIVE", (), ())


@pytest.mark.parametrize("policies, mode, sources", [
    ([MESH_STRICT], "STRICT", ("istio-system/default",)),
    ([MESH_STRICT, NS_DISABLE], "DISABLE", ("istio-system/default", "foo/default")),
    ([MESH_STRICT, NS_DISABLE, WL_PERMISSIVE], "PERMISSIVE", ("istio-system/default", "foo/default", "foo/finance")),
    ([NS_DISABLE, WL_PERMISSIVE], "PERMISSIVE", ("foo/default", "foo/finance")),
    ([MESH_STRICT, WL_PERMISSIVE], "PERMISSIVE", ("istio-system/default", "foo/finance")),
    # UNSET inherits the level above, and a mesh-wide UNSET is PERMISSIVE
    ([MESH_STRICT, NS_UNSET], "STRICT", ("istio-system/default", "foo/default")),
    ([pa("default", "istio-system", "{mtls: {mode: UNSET}}")], "PERMISSIVE", ("istio-system/default",)),
    ([pa("default", "istio-system", "{}"), NS_UNSET], "PERMISSIVE", ("istio-system/default", "foo/default")),
    ([MESH_STRICT, NS_DISABLE, pa("finance", "foo", "{selector: {matchLabels: {app: finance}}}")], "DISABLE",
     ("istio-system/default", "foo/default", "foo/finance")),
])
def test_the_most_specific_level_that_sets_a_mode_wins(policies, mode, sources):
    effective = resolve(state(*[(p, i + 1) for i, p in enumerate(policies)]))
    assert (effective.mode, effective.sources) == (mode, sources)
    assert effective.revision == len(policies)


def test_a_workload_policy_applies_only_to_workloads_its_labels_select_in_its_namespace():
    s = state((MESH_STRICT, 1), (WL_PERMISSIVE, 2))
    peers = PeerAuthn(s)
    assert peers.resolve("foo", FINANCE).mode == "PERMISSIVE"
    assert peers.resolve("foo", {"app": "payroll"}).mode == "STRICT"
    assert peers.resolve("bar", FINANCE).mode == "STRICT"  # another namespace's workload
    assert peers.resolve("foo", {"version": "v1"}).mode == "STRICT"  # labels must include every selector label


def test_policies_of_another_namespace_do_not_apply():
    assert resolve(state((pa("default", "bar", "{mtls: {mode: STRICT}}"), 1))).mode == "PERMISSIVE"


def test_a_selector_in_the_root_namespace_applies_to_nothing_as_in_istio():
    selecting = pa("finance", "istio-system", "{selector: {matchLabels: {app: finance}}, mtls: {mode: DISABLE}}")
    effective = resolve(state((MESH_STRICT, 1), (selecting, 2)))
    assert (effective.mode, effective.sources) == ("STRICT", ("istio-system/default",))
    # the root namespace is a setting: elsewhere it is the mesh-wide policy's home
    assert resolve(state((selecting, 2), root="mesh-root"), namespace="istio-system").mode == "DISABLE"


def test_a_selector_without_labels_is_a_namespace_wide_policy():
    empty = pa("all", "foo", "{selector: {}, mtls: {mode: DISABLE}}")
    assert resolve(state((MESH_STRICT, 1), (empty, 2)), labels={"any": "one"}).mode == "DISABLE"


def test_port_level_mtls_overrides_per_workload_port_and_its_unset_takes_the_workloads_mode():
    effective = resolve(state((MESH_STRICT, 1), (WL_UNSET_PORT, 2)))
    assert effective.mode == "STRICT"  # the workload policy's own mode is unset: the mesh's
    assert effective.ports == ((8080, "DISABLE"), (9090, "STRICT"))
    assert (effective.mode_for(8080), effective.mode_for(9090), effective.mode_for(80)) == ("DISABLE", "STRICT",
                                                                                           "STRICT")


def test_port_level_mtls_of_a_policy_that_does_not_select_the_workload_does_not_apply():
    assert resolve(state((WL_UNSET_PORT, 2)), labels={"app": "payroll"}).ports == ()


@pytest.mark.parametrize("first, second", [
    (("a", 3), ("b", 7)),  # create revisions decide
    (("z", 3), ("a", 7)),
])
def test_of_two_namespace_wide_policies_the_oldest_wins(first, second):
    older = pa(first[0], "foo", "{mtls: {mode: STRICT}}")
    newer = pa(second[0], "foo", "{mtls: {mode: DISABLE}}")
    # the newer one was modified last: the create revision, not the mod revision, decides
    effective = resolve(state((older, 20, first[1]), (newer, 8, second[1])))
    assert (effective.mode, effective.sources) == ("STRICT", (f"foo/{first[0]}",))


def test_of_two_policies_created_in_one_transaction_the_name_breaks_the_tie_as_istio():
    a = pa("a-finance", "foo", "{selector: {matchLabels: {app: finance}}, mtls: {mode: DISABLE}}")
    b = pa("b-finance", "foo", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}")
    assert resolve(state((b, 5, 5), (a, 5, 5))).sources == ("foo/a-finance",)
    mesh_b, mesh_a = pa("b", "istio-system", "{mtls: {mode: STRICT}}"), pa("a", "istio-system", "{mtls: {mode: DISABLE}}")
    assert resolve(state((mesh_b, 4, 4), (mesh_a, 4, 4))).mode == "DISABLE"


def test_of_two_workload_policies_selecting_one_workload_the_oldest_wins():
    old = pa("by-version", "foo", "{selector: {matchLabels: {version: v1}}, mtls: {mode: DISABLE}}")
    new = pa("by-app", "foo", "{selector: {matchLabels: {app: finance}}, mtls: {mode: STRICT}}")
    assert resolve(state((new, 9, 9), (old, 10, 2))).mode == "DISABLE"


def finance(wid: str = "f1", namespace: str = "foo", labels: dict[str, str] = FINANCE) -> Workload:
    return Workload(id=wid, service="finance", namespace=namespace, labels=labels)


def test_every_registered_workload_gets_its_security_entry_keyed_by_its_id():
    s = state((MESH_STRICT, 3), (WL_UNSET_PORT, 4),
              workloads=[(finance("f1"), 7), (finance("p1", labels={"app": "payroll"}), 2)])
    security = compile_security(s)
    # no policy: the default entry (PERMISSIVE), so its sidecar can tell it from "not registered yet"
    assert compile_security(state(workloads=[(finance("f1"), 7)])) == {
        "f1": WorkloadSecurity(workload="f1", version=7, namespace="foo", service="finance",
                               service_account="default", mtls_mode="PERMISSIVE")}
    # the registration it was compiled from (its sidecar takes only an entry of its own registration)
    assert security["f1"] == WorkloadSecurity(workload="f1", version=7, namespace="foo", service="finance",
                                              service_account="default", mtls_mode="STRICT",
                                              port_mtls={8080: "DISABLE", 9090: "STRICT"},
                                              peer_authentications=["istio-system/default", "foo/finance"])
    assert (security["p1"].mtls_mode, security["p1"].port_mtls, security["p1"].version) == ("STRICT", {}, 3)
    assert security["f1"].mode_for(8080) == "DISABLE" and security["f1"].mode_for(15006) == "STRICT"


def test_a_mode_change_is_a_push_of_the_entries_it_changes_and_the_snapshot_holds_all():
    workloads = [(finance("f1"), 2), (finance("p1", labels={"app": "payroll"}), 2)]
    pusher = Pusher()
    first = pusher.recompile(state(workloads=workloads, revision=2), 2)
    assert first is not None and [(e.workload, e.mtls_mode) for e in first.security] == [
        ("f1", "PERMISSIVE"), ("p1", "PERMISSIVE")]  # no policy: the default entries
    strict = pusher.recompile(state((MESH_STRICT, 5), workloads=workloads, revision=5), 5)
    assert strict is not None and [(e.workload, e.mtls_mode, e.version) for e in strict.security] == [
        ("f1", "STRICT", 5), ("p1", "STRICT", 5)]
    disable = pusher.recompile(state((MESH_STRICT, 5), (WL_PERMISSIVE.replace("PERMISSIVE", "DISABLE"), 6),
                                     workloads=workloads, revision=6), 6)
    assert disable is not None and [(e.workload, e.mtls_mode) for e in disable.security] == [("f1", "DISABLE")]
    assert pusher.recompile(state((MESH_STRICT, 5), (WL_PERMISSIVE.replace("PERMISSIVE", "DISABLE"), 6),
                                  workloads=workloads, revision=7), 7) is None  # nothing changed: no push
    snapshot = decode(pusher.snapshot_bytes(), Push)
    assert {e.workload: e.mtls_mode for e in snapshot.security} == {"f1": "DISABLE", "p1": "STRICT"}


def test_a_gone_workload_loses_its_entry_and_one_back_to_no_policy_gets_the_default_at_a_newer_version():
    workloads = [(finance("f1"), 2), (finance("p1", labels={"app": "payroll"}), 2)]
    pusher = Pusher()
    pusher.recompile(state((MESH_STRICT, 5), workloads=workloads, revision=5), 5)
    gone = pusher.recompile(state((MESH_STRICT, 5), workloads=workloads[:1], revision=6), 6)
    assert gone is not None and (gone.security, gone.removed_security) == ([], ["p1"])
    back = pusher.recompile(state(workloads=workloads[:1], revision=9), 9)
    assert back is not None and back.removed_security == []
    assert [(e.workload, e.mtls_mode, e.peer_authentications, e.version) for e in back.security] == [
        ("f1", "PERMISSIVE", [], 9)]
    assert [e.workload for e in pusher.snapshot().security] == ["f1"]


def test_deleting_a_policy_gives_the_entries_it_changes_a_version_above_the_old_one():
    workloads = [(finance("f1"), 2)]
    pusher = Pusher()
    before = pusher.recompile(state((MESH_STRICT, 5), (NS_DISABLE, 8), workloads=workloads, revision=8), 8)
    assert before is not None and [(e.mtls_mode, e.version) for e in before.security] == [("DISABLE", 8)]
    after = pusher.recompile(state((MESH_STRICT, 5), workloads=workloads, revision=9), 9)
    assert after is not None
    (entry,) = after.security
    assert (entry.mtls_mode, entry.peer_authentications) == ("STRICT", ["istio-system/default"])
    assert entry.version == 9  # the deletion's revision, though what is left is at 5

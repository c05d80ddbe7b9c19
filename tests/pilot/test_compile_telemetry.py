"""services/pilot/compile/telemetry.py and security.py: which Telemetry resources apply to a workload (Istio's
scope and order), how they merge field by field (Istio's telemetry.go Tracing and mergeLogs, and the cases of
its telemetry_logging_test.go TestAccessLogging), and their delivery on WorkloadSecurity.telemetry."""

from __future__ import annotations

import pytest

from proto.registry import Workload
from proto.telemetry import AccessLogPolicy, TracingPolicy
from services.pilot.compile.telemetry import Telemetries
from services.pilot.pusher import Pusher
from tests.pilot.test_peer_authn import MESH_STRICT, state

FIN = Workload(id="f1", service="finance", namespace="foo", address="10.0.0.1", labels={"app": "finance"})
PAY = Workload(id="p1", service="payroll", namespace="foo", address="10.0.0.2", labels={"app": "payroll"})
SEL = "selector: {matchLabels: {app: finance}}, "


def tm(name: str, namespace: str, spec: str) -> str:
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def log(providers: str = "", mode: str = "", disabled: bool | None = None, expr: str = "") -> str:
    parts = [f"providers: [{', '.join('{name: ' + p + '}' for p in providers.split())}]" if providers else "",
             f"match: {{mode: {mode}}}" if mode else "", f"disabled: {str(disabled).lower()}" if disabled is not None
             else "", f"filter: {{expression: '{expr}'}}" if expr else ""]
    return "{" + ", ".join(p for p in parts if p) + "}"


def logging(*entries: str, selector: str = "") -> str:
    return f"{{{selector}accessLogging: [{', '.join(entries)}]}}"


def resolve(*policies: tuple[str, int], namespace: str = "foo", labels: dict[str, str] | None = None):
    return Telemetries(state(*policies)).resolve(namespace, {"app": "finance"} if labels is None else labels)


def logs_of(*policies: tuple[str, int], **kw) -> list[tuple[str, str, bool, str]]:
    policy = resolve(*policies, **kw).policy
    return [(a.provider, a.mode, a.disabled, a.filter) for a in policy.access_logs] if policy else []


@pytest.mark.parametrize("telemetry, in_foo, in_bar, to_payroll", [
    (tm("mesh", "istio-system", logging(log("envoy"))), True, True, True),  # root, no selector: the mesh
    (tm("ns", "foo", logging(log("envoy"))), True, False, True),  # a namespace, no selector: its workloads
    (tm("sel", "foo", logging(log("envoy"), selector=SEL)), True, False, False),  # selector: matching ones there
    # a root-namespace Telemetry with a selector selects workloads of the root namespace only (Istio's lookup
    # is in the workload's namespace), unlike an AuthorizationPolicy
    (tm("sel", "istio-system", logging(log("envoy"), selector=SEL)), False, False, False),
])
def test_a_telemetry_applies_as_istio_scopes_it(telemetry, in_foo, in_bar, to_payroll):
    s = state((telemetry, 3))
    t = Telemetries(s)
    assert (t.resolve("foo", {"app": "finance"}).policy is not None) == in_foo
    assert (t.resolve("bar", {"app": "finance"}).policy is not None) == in_bar
    assert (t.resolve("foo", {"app": "payroll"}).policy is not None) == to_payroll


def test_sources_are_mesh_then_namespace_then_workload_and_only_the_oldest_namespace_wide_one():
    found = resolve((tm("w2", "foo", logging(log("envoy"), selector=SEL)), 9),
                    (tm("mesh", "istio-system", logging(log("envoy"))), 5),
                    (tm("ns-new", "foo", logging(log("isthmus"))), 8), (tm("ns-old", "foo", logging(log("envoy"))), 6),
                    (tm("w1", "foo", logging(log("envoy"), selector=SEL)), 7))
    assert found.policy.sources == ["istio-system/mesh", "foo/ns-old", "foo/w1", "foo/w2"]
    assert found.revision == 9


def test_no_telemetry_no_policy():
    assert resolve() == (None, 0)


# --- accessLogging: Istio's TestAccessLogging cases, with our providers (isthmus for envoy-json) -----------------
@pytest.mark.parametrize("policies, expected", [
    ([logging(log("envoy"))], [("envoy", "CLIENT_AND_SERVER", False, "")]),
    ([logging(log("Envoy"))], [("envoy", "CLIENT_AND_SERVER", False, "")]),  # Istio's fetchProvider: EqualFold
    ([logging(log("envoy", "CLIENT"))], [("envoy", "CLIENT", False, "")]),  # inbound: the sidecar's own setting
    ([logging(log("envoy", "SERVER"))], [("envoy", "SERVER", False, "")]),
    ([logging(log("envoy", "CLIENT", True))], [("envoy", "CLIENT", True, "")]),
    ([logging(log("envoy", "CLIENT_AND_SERVER"))], [("envoy", "CLIENT_AND_SERVER", False, "")]),
    # "disabled": an entry without providers means its parent's (ours: envoy at the top)
    ([logging(log(disabled=True))], [("envoy", "CLIENT_AND_SERVER", True, "")]),
    ([logging(log())], [("envoy", "CLIENT_AND_SERVER", False, "")]),
    # a namespace's Telemetry replaces the mesh's providers
    ([logging(log("envoy")), logging(log("isthmus"))], [("isthmus", "CLIENT_AND_SERVER", False, "")]),
    # "multi accesslogging": both of one Telemetry
    ([logging(log("envoy")), logging(log("envoy"), log("isthmus"))],
     [("envoy", "CLIENT_AND_SERVER", False, ""), ("isthmus", "CLIENT_AND_SERVER", False, "")]),
    # "multi accesslogging with disabled"
    ([logging(log("envoy")), logging(log("envoy"), log("isthmus", disabled=True))],
     [("envoy", "CLIENT_AND_SERVER", False, ""), ("isthmus", "CLIENT_AND_SERVER", True, "")]),
    # "multi accesslogging - multi providers"
    ([logging(log("envoy")), logging(log("envoy isthmus"), log("envoy"))],
     [("envoy", "CLIENT_AND_SERVER", False, ""), ("isthmus", "CLIENT_AND_SERVER", False, "")]),
    # "server - multi filters disabled": the last entry naming envoy turns it off on both sides
    ([logging(log("envoy", "SERVER"), log("envoy", "CLIENT_AND_SERVER", True))],
     [("envoy", "CLIENT_AND_SERVER", True, "")]),
    # "server and client different"
    ([logging(log("envoy", "SERVER"), log("isthmus", "CLIENT"))],
     [("envoy", "SERVER", False, ""), ("isthmus", "CLIENT", False, "")]),
    # a workload turns off what its namespace turned on, inheriting the providers
    ([logging(log("envoy", expr="response.code >= 400")), logging(log(disabled=True), selector=SEL)],
     [("envoy", "CLIENT_AND_SERVER", True, "")]),
])
def test_access_logging_merges_as_istios_merge_logs(policies, expected):
    scopes = [("mesh", "istio-system"), ("ns", "foo"), ("wl", "foo")]
    given = [(tm(name, ns, spec), i + 1) for i, ((name, ns), spec) in enumerate(zip(scopes, policies))]
    assert logs_of(*given) == expected


@pytest.mark.parametrize("entries, expected", [
    # a filter per provider, the last entry naming the provider giving it
    ([log("envoy", expr="response.code >= 400")], [("envoy", "CLIENT_AND_SERVER", False, "response.code >= 400")]),
    ([log("envoy", expr="response.code >= 400"), log("envoy", expr="response.code >= 500")],
     [("envoy", "CLIENT_AND_SERVER", False, "response.code >= 500")]),
    # per side: the SERVER filter applies inbound only
    ([log("envoy"), log("envoy", "SERVER", expr="response.code >= 500")],
     [("envoy", "CLIENT", False, ""), ("envoy", "SERVER", False, "response.code >= 500")]),
])
def test_filters_merge_per_provider_and_side(entries, expected):
    assert logs_of((tm("ns", "foo", logging(*entries)), 1)) == expected


def test_a_more_specific_telemetry_keeps_the_filter_of_the_entry_that_named_the_provider():
    mesh = tm("mesh", "istio-system", logging(log("envoy", expr="response.code >= 400")))
    wl = tm("wl", "foo", logging(log("envoy", "SERVER"), selector=SEL))
    assert logs_of((mesh, 1), (wl, 2)) == [("envoy", "CLIENT", False, "response.code >= 400"),
                                          ("envoy", "SERVER", False, "")]


def test_a_telemetry_without_access_logging_leaves_the_sidecars_own_setting():
    policy = resolve((tm("t", "foo", "{tracing: [{randomSamplingPercentage: 10}]}"), 1)).policy
    assert policy is not None and policy.access_logs == []


# --- tracing: Istio's Tracing(), field by field ---------------------------------------------------------------
def tracing_of(*specs: str):
    scopes = [("mesh", "istio-system"), ("ns", "foo"), ("wl", "foo")]
    given = [(tm(name, ns, (SEL if name == "wl" else "") and "{" + SEL + spec[1:] or spec), i + 1)
             for i, ((name, ns), spec) in enumerate(zip(scopes, specs))]
    policy = resolve(*given).policy
    return policy.tracing, policy.tracing_server


def test_tracing_fields_are_overridden_one_by_one_by_more_specific_telemetries():
    client, server = tracing_of("{tracing: [{randomSamplingPercentage: 10, customTags: {a: {literal: {value: x}}}}]}",
                                "{tracing: [{disableSpanReporting: true}]}",
                                "{tracing: [{randomSamplingPercentage: 50}]}")
    assert server is None
    assert client == TracingPolicy(mode="CLIENT_AND_SERVER", sampling_percent=50.0, report=False,
                                   custom_tags={"a": "x"})


def test_custom_tags_replace_the_whole_map_and_keep_their_kinds():
    client, _ = tracing_of("{tracing: [{customTags: {a: {literal: {value: x}}}}]}",
                           "{tracing: [{customTags: {h: {header: {name: X-User, defaultValue: anon}}, "
                           "e: {environment: {name: HOST_NAME}}}}]}")
    assert (client.custom_tags, client.header_tags, client.environment_tags, client.tag_defaults) == (
        {}, {"h": "x-user"}, {"e": "HOST_NAME"}, {"h": "anon"})


def test_a_tracing_entry_for_one_side_leaves_the_other_at_the_mesh_default():
    client, server = tracing_of("{tracing: [{match: {mode: SERVER}, randomSamplingPercentage: 100}]}")
    assert server is None and client == TracingPolicy(mode="SERVER", sampling_percent=100.0)


def test_two_different_sides_give_tracing_and_tracing_server():
    client, server = tracing_of("{tracing: [{match: {mode: CLIENT}, randomSamplingPercentage: 5}, "
                                "{match: {mode: SERVER}, randomSamplingPercentage: 50}]}")
    assert client == TracingPolicy(mode="CLIENT", sampling_percent=5.0)
    assert server == TracingPolicy(mode="SERVER", sampling_percent=50.0)


def test_no_tracing_entry_leaves_tracing_to_the_mesh_default():
    assert tracing_of("{accessLogging: [{providers: [{name: envoy}]}]}") == (None, None)


# --- delivery -------------------------------------------------------------------------------------------------
def test_a_workload_with_only_a_telemetry_gets_an_entry_and_loses_it_with_the_last_one():
    pusher = Pusher()
    workloads = [(FIN, 2), (PAY, 2)]
    wl = tm("wl", "foo", logging(log("envoy", expr="response.code >= 400"), selector=SEL))
    applied = pusher.recompile(state((wl, 5), workloads=workloads, revision=5), 5)
    assert applied is not None and [(e.workload, e.version) for e in applied.security] == [("f1", 5), ("p1", 2)]
    entry, default = applied.security
    assert entry.mtls_mode == "PERMISSIVE" and entry.authorization == [] and entry.telemetry.sources == ["foo/wl"]
    assert default.telemetry is None  # no Telemetry applies to p1: the mesh's defaults
    assert entry.telemetry.access_logs == [AccessLogPolicy(provider="envoy", filter="response.code >= 400")]
    assert pusher.recompile(state((wl, 5), workloads=workloads, revision=6), 6) is None  # unchanged: no push
    changed = tm("wl", "foo", logging(log("envoy", disabled=True), selector=SEL))
    again = pusher.recompile(state((changed, 7), workloads=workloads, revision=7), 7)
    assert again is not None and [(e.workload, e.version) for e in again.security] == [("f1", 7)]
    assert again.security[0].telemetry.access_logs[0].disabled
    deleted = pusher.recompile(state(workloads=workloads, revision=8), 8)
    assert deleted is not None and deleted.removed_security == []
    assert [(e.workload, e.version, e.telemetry) for e in deleted.security] == [("f1", 8, None)]


def test_a_telemetry_rides_on_the_entry_a_peer_authentication_already_makes():
    pusher = Pusher()
    mesh = tm("mesh", "istio-system", logging(log("isthmus")))
    push = pusher.recompile(state((MESH_STRICT, 3), (mesh, 4), workloads=[(FIN, 2)], revision=4), 4)
    (entry,) = push.security
    assert entry.mtls_mode == "STRICT" and entry.version == 4
    assert entry.telemetry.access_logs == [AccessLogPolicy(provider="isthmus")]
    removed = pusher.recompile(state((MESH_STRICT, 3), workloads=[(FIN, 2)], revision=6), 6)
    assert removed is not None and removed.security[0].telemetry is None and removed.security[0].version == 6


def test_every_push_carries_the_mesh_default_sampling():
    from proto.xds import MeshConfig
    pusher = Pusher(MeshConfig(trace_sampling=25.0))
    push = pusher.recompile(state((tm("mesh", "istio-system", logging(log("envoy"))), 3), workloads=[(FIN, 2)],
                                  revision=3), 3)
    assert push.mesh.trace_sampling == 25.0 and pusher.snapshot().mesh.trace_sampling == 25.0

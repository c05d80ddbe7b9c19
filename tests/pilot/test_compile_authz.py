"""services/pilot/compile/authz.py and security.py: which AuthorizationPolicies and RequestAuthentications apply
to each workload (Istio's scope and order), and their delivery in pushes."""

from __future__ import annotations

import pytest

from proto.registry import Workload
from services.pilot.compile import Authz
from services.pilot.compile.authz import NOT_FETCHED
from services.pilot.pusher import Pusher
from tests.pilot.test_peer_authn import MESH_STRICT, state


def ap(name: str, namespace: str, spec: str = "{rules: [{}]}") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def ra(name: str, namespace: str, rules: str, selector: str = "") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{{selector} jwtRules: {rules}}}
"""


JWKS = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "cpm6L24TexGX8KlunXSmS4yUt8ipL4dD6vI1PEyk9ag", ' \
       '"y": "JwJcfveq67Ro3jKTFyttEDvl9ArtPSgKKOTB3qeWFrE"}]}'
SEL_FIN = "selector: {matchLabels: {app: finance}},"


def names(s, namespace: str = "foo", labels: dict[str, str] | None = None) -> list[str]:
    return [p.name for p in Authz(s).resolve(namespace, labels or {"app": "finance"}).authorization]


@pytest.mark.parametrize("policy, applies_in_foo, applies_in_bar, applies_to_payroll", [
    (ap("mesh", "istio-system"), True, True, True),  # root, no selector: every workload of the mesh
    (ap("mesh", "istio-system", f"{{{SEL_FIN} rules: [{{}}]}}"), True, True, False),  # root + selector: every ns
    (ap("ns", "foo"), True, False, True),  # a namespace, no selector: its workloads
    (ap("ns", "foo", "{selector: {matchLabels: {}}, rules: [{}]}"), True, False, True),  # empty matchLabels: none
    (ap("ns", "foo", "{selector: {}, rules: [{}]}"), True, False, True),
    (ap("sel", "foo", f"{{{SEL_FIN} rules: [{{}}]}}"), True, False, False),  # selector: matching ones there
    (ap("sel", "foo", "{selector: {matchLabels: {app: finance, version: v2}}, rules: [{}]}"), False, False, False),
])
def test_an_authorization_policy_applies_as_istio_scopes_it(policy, applies_in_foo, applies_in_bar,
                                                              applies_to_payroll):
    s = state((policy, 3))
    assert bool(names(s, "foo", {"app": "finance", "version": "v1"})) == applies_in_foo
    assert bool(names(s, "bar", {"app": "finance", "version": "v1"})) == applies_in_bar
    assert bool(names(s, "foo", {"app": "payroll"})) == applies_to_payroll


def test_policies_come_root_namespace_first_then_the_workloads_each_oldest_first():
    s = state((ap("b-new", "foo"), 9, 9), (ap("a-old", "foo"), 8, 2), (ap("z", "istio-system"), 10, 10),
              (ap("same-age-b", "foo"), 5, 5), (ap("same-age-a", "foo"), 6, 5), (ap("other", "bar"), 3, 3))
    assert names(s) == ["istio-system/z", "foo/a-old", "foo/same-age-a", "foo/same-age-b", "foo/b-new"]


def test_a_workload_in_the_root_namespace_gets_its_policies_once():
    s = state((ap("mesh", "istio-system"), 3))
    assert names(s, "istio-system") == ["istio-system/mesh"]


def test_pushed_policies_carry_istios_rules_and_action_verbatim():
    spec = "{action: DENY, rules: [{from: [{source: {notNamespaces: [foo]}}], to: [{operation: {ports: [8080, '9000']}}]}]}"
    (policy,) = Authz(state((ap("deny", "foo", spec), 3))).resolve("foo", {}).authorization
    assert (policy.name, policy.action) == ("foo/deny", "DENY")
    assert policy.rules[0].to[0].operation.ports == [8080, "9000"]
    assert policy.rules[0].from_[0].source.not_namespaces == ["foo"]
    (allow,) = Authz(state((ap("nothing", "foo", "{}"), 3))).resolve("foo", {}).authorization
    assert (allow.action, allow.rules) == ("ALLOW", [])  # spec: {} is an ALLOW that matches nothing


def test_request_authentications_come_workload_namespace_first_and_every_rule_is_a_provider():
    s = state((ra("mesh", "istio-system", "[{issuer: https://root.example, jwksUri: 'https://root.example/k'}]"), 2),
              (ra("ns", "foo", f"[{{issuer: a, jwks: '{JWKS}'}}, {{issuer: b, jwks: '{JWKS}'}}]"), 5),
              (ra("sel", "foo", f"[{{issuer: c, jwks: '{JWKS}'}}]", SEL_FIN), 6),
              (ra("sel-root", "istio-system", f"[{{issuer: d, jwks: '{JWKS}'}}]", SEL_FIN), 7),
              (ra("other", "bar", f"[{{issuer: e, jwks: '{JWKS}'}}]"), 8))
    applied = Authz(s).resolve("foo", {"app": "finance"})
    assert [(p.source, p.rule.issuer) for p in applied.jwt] == [
        ("foo/ns", "a"), ("foo/ns", "b"), ("foo/sel", "c"), ("istio-system/mesh", "https://root.example"),
        ("istio-system/sel-root", "d")]
    assert applied.revision == 7
    inline, fetched = applied.jwt[0], applied.jwt[3]
    assert (inline.rule.jwks, inline.jwks_error) == (JWKS, "")
    assert (fetched.rule.jwks, fetched.jwks_error) == (None, NOT_FETCHED)  # no resolver in this compile
    assert [p.rule.issuer for p in Authz(s).resolve("bar", {"app": "payroll"}).jwt] == ["e", "https://root.example"]


def test_the_jwks_lookup_fills_in_key_sets_and_errors_without_touching_inline_ones():
    asked = []

    def lookup(issuer, uri, timeout):
        asked.append((issuer, uri, timeout))
        return (JWKS, "") if uri else (None, "GET https://d.example/.well-known/openid-configuration: status 500")

    s = state((ra("r", "foo", f"[{{issuer: a, jwksUri: 'https://a.example/k', timeout: 1.5s}}, "
                              f"{{issuer: 'https://d.example'}}, {{issuer: c, jwks: '{JWKS}'}}]"), 3))
    a, d, c = Authz(s, lookup).resolve("foo", {}).jwt
    assert asked == [("a", "https://a.example/k", 1.5), ("https://d.example", None, 5.0)]
    assert (a.rule.jwks, a.rule.jwks_uri, a.jwks_error) == (JWKS, "https://a.example/k", "")
    assert (d.rule.jwks, d.jwks_error) == (None, "GET https://d.example/.well-known/openid-configuration: status 500")
    assert (c.rule.jwks, c.jwks_error) == (JWKS, "")


FIN = Workload(id="f1", service="finance", namespace="foo", labels={"app": "finance"})
PAY = Workload(id="p1", service="payroll", namespace="foo", labels={"app": "payroll"})


@pytest.mark.parametrize("first, changed", [
    (ap("p", "foo", f"{{{SEL_FIN} rules: [{{}}]}}"), ap("p", "foo", f"{{{SEL_FIN} action: DENY, rules: [{{}}]}}")),
    (ra("r", "foo", f"[{{issuer: a, jwks: '{JWKS}'}}]", SEL_FIN),
     ra("r", "foo", f"[{{issuer: b, jwks: '{JWKS}'}}]", SEL_FIN)),
])
def test_applying_changing_and_deleting_each_kind_changes_the_pushed_entry(first, changed):
    pusher = Pusher()
    workloads = [(FIN, 2), (PAY, 2)]
    applied = pusher.recompile(state((first, 5), workloads=workloads, revision=5), 5)
    # every registered workload gets an entry: p1's is the default one (no policy applies to it)
    assert applied is not None and [(e.workload, e.version) for e in applied.security] == [("f1", 5), ("p1", 2)]
    entry, default = applied.security
    assert entry.mtls_mode == "PERMISSIVE" and (len(entry.authorization) + len(entry.jwt)) == 1
    assert (default.authorization, default.jwt, default.mtls_mode) == ([], [], "PERMISSIVE")
    assert pusher.recompile(state((first, 5), workloads=workloads, revision=6), 6) is None  # unchanged: no push
    again = pusher.recompile(state((changed, 7), workloads=workloads, revision=7), 7)
    assert again is not None and [(e.workload, e.version) for e in again.security] == [("f1", 7)]
    assert again.security[0] != entry
    deleted = pusher.recompile(state(workloads=workloads, revision=8), 8)
    # istio/istio#53071: the deleted policy goes at once: the entry is the default one again, at a newer version
    assert deleted is not None and deleted.removed_security == []
    assert [(e.workload, e.version, e.authorization, e.jwt) for e in deleted.security] == [("f1", 8, [], [])]
    assert [e.workload for e in pusher.snapshot().security] == ["f1", "p1"]


def test_deleting_one_of_two_policies_updates_the_entry_with_a_higher_version():
    pusher = Pusher()
    workloads = [(FIN, 2)]
    pusher.recompile(state((ap("old", "foo"), 5, 5), (ap("new", "foo"), 6, 6), workloads=workloads, revision=6), 6)
    after = pusher.recompile(state((ap("old", "foo"), 5, 5), workloads=workloads, revision=9), 9)
    assert after is not None and after.removed_security == []
    (entry,) = after.security
    assert [p.name for p in entry.authorization] == ["foo/old"] and entry.version == 9


def test_peer_authentication_and_authorization_share_one_entry():
    pusher = Pusher()
    push = pusher.recompile(state((MESH_STRICT, 3), (ap("p", "foo"), 4), workloads=[(FIN, 2)], revision=4), 4)
    assert push is not None
    (entry,) = push.security
    assert (entry.mtls_mode, entry.peer_authentications, [p.name for p in entry.authorization]) == (
        "STRICT", ["istio-system/default"], ["foo/p"])
    only_authz = pusher.recompile(state((ap("p", "foo"), 4), workloads=[(FIN, 2)], revision=6), 6)
    assert only_authz is not None and only_authz.removed_security == []
    assert (only_authz.security[0].mtls_mode, only_authz.security[0].version) == ("PERMISSIVE", 6)


def test_changed_fetched_keys_alone_push_the_entry_with_a_higher_version():
    answer = {"keys": None, "error": "fetching: no answer yet"}
    pusher = Pusher(jwks=lambda issuer, uri, timeout: (answer["keys"], answer["error"]))
    s = state((ra("r", "foo", "[{issuer: a, jwksUri: 'https://a.example/k'}]"), 5), workloads=[(FIN, 2)], revision=5)
    first = pusher.recompile(s, 5)
    assert first is not None and first.security[0].jwt[0].jwks_error == "fetching: no answer yet"
    answer.update(keys=JWKS, error="")
    second = pusher.recompile(s, 5)  # the same etcd revision: only the fetch changed
    assert second is not None
    (entry,) = second.security
    assert (entry.jwt[0].rule.jwks, entry.jwt[0].jwks_error) == (JWKS, "") and entry.version == 6
    assert pusher.recompile(s, 5) is None

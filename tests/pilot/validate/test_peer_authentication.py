"""services/pilot/validate/peer_authentication.py: Istio's rules for PeerAuthentication, with paths."""

from __future__ import annotations

import pytest

from proto.resources import kind_from_alias
from services.pilot.validate import decode_documents, placement_warnings
from tests.pilot.validate.documents import by_path, decode, paths
from tests.pilot.validate.istio_docs import PEER_AUTHENTICATION


@pytest.mark.parametrize("name", PEER_AUTHENTICATION)
def test_istios_own_peer_authentication_yaml_applies_unchanged(name):
    namespace, text = PEER_AUTHENTICATION[name]
    resources, errors, warnings = decode_documents(text, default_namespace=namespace)
    assert errors == [] and warnings == [], name
    assert resources and all(r.kind == "PeerAuthentication" for r in resources)


def test_the_migration_tasks_policy_lands_in_the_namespace_it_is_applied_to():
    namespace, text = PEER_AUTHENTICATION["migration: lock down the mesh"]
    (resource,), _, _ = decode_documents(text, default_namespace=namespace)
    assert (resource.metadata.namespace, resource.metadata.name) == ("istio-system", "default")
    assert resource.spec.mtls.mode == "STRICT" and resource.api_version == "security.istio.io/v1beta1"


def test_port_level_keys_are_numbers_whether_yaml_or_json_wrote_them():
    for ports in ("{8080: {mode: DISABLE}}", '{"8080": {mode: DISABLE}}'):
        (resource,), errors, _ = decode(f"""
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {{name: p, namespace: foo}}
        spec:
          selector: {{matchLabels: {{app: finance}}}}
          portLevelMtls: {ports}
        """)
        assert errors == [] and resource.spec.port_level_mtls[8080].mode == "DISABLE"


def _pa(spec: str) -> str:
    return f"""
    apiVersion: security.istio.io/v1
    kind: PeerAuthentication
    metadata: {{name: p, namespace: foo}}
    spec: {spec}
    """


SELECTED = "selector: {matchLabels: {app: finance}}"


@pytest.mark.parametrize("spec, path, message", [
    ("{mtls: {mode: BLAH}}", "spec.mtls.mode", "unsupported mode `BLAH`"),
    ("{mtls: {mode: strict}}", "spec.mtls.mode", "unsupported mode `strict`"),
    ("{portLevelMtls: {80: {mode: STRICT}}}", "spec.portLevelMtls", "requires a selector with labels"),
    ("{selector: {}, portLevelMtls: {80: {mode: STRICT}}}", "spec.portLevelMtls", "requires a selector with labels"),
    (f"{{{SELECTED}, portLevelMtls: {{}}}}", "spec.portLevelMtls", "must have at least one element"),
    (f"{{{SELECTED}, portLevelMtls: {{0: {{mode: STRICT}}}}}}", "spec.portLevelMtls[0]", "not in the range 1..65535"),
    (f"{{{SELECTED}, portLevelMtls: {{65536: {{mode: STRICT}}}}}}", "spec.portLevelMtls[65536]",
     "not in the range 1..65535"),
    (f"{{{SELECTED}, portLevelMtls: {{42949672: {{}}}}}}", "spec.portLevelMtls[42949672]", "not in the range"),
    (f"{{{SELECTED}, portLevelMtls: {{acd: {{mode: STRICT}}}}}}", "spec.portLevelMtls[acd]", "must be numbers"),
    (f"{{{SELECTED}, portLevelMtls: {{80: {{mode: BLAH}}}}}}", "spec.portLevelMtls[80].mode", "unsupported mode"),
    (f"{{{SELECTED}, portLevelMtls: {{80: {{mode: STRICT, extra: 1}}}}}}", "spec.portLevelMtls[80].extra",
     "not supported"),
    ("{selector: {matchLabels: {'': x}}}", "spec.selector.matchLabels[]", "key must not be empty"),
    ("{selector: {matchLabels: {'app*': x}}}", "spec.selector.matchLabels[app*]", "wildcard is not supported"),
    ("{selector: {matchLabels: {app: 'fin*'}}}", "spec.selector.matchLabels[app]", "wildcard is not supported"),
    ("{selector: {matchLabels: {app: " + "v" * 64 + "}}}", "spec.selector.matchLabels[app]", "longer than 63"),
    ("{targetRef: {kind: Service, name: finance}}", "spec.targetRef", "has no targetRef in Istio"),
    ("{targetRefs: [{kind: Service, name: finance}]}", "spec.targetRefs", "has no targetRef in Istio"),
    ("{mtls: {mode: STRICT, permissive: true}}", "spec.mtls.permissive", "not supported by Isthmus"),
    ("{mtls: STRICT}", "spec.mtls", "expected an object"),
])
def test_invalid_peer_authentications_are_rejected_with_their_path(spec, path, message):
    resources, errors, _ = decode(_pa(spec))
    assert resources == []
    assert message in by_path(errors, path).message


def test_every_problem_of_one_policy_is_reported_at_once():
    _, errors, _ = decode(_pa("{targetRef: {name: x}, mtls: {mode: X}, portLevelMtls: {0: {mode: Y}}}"))
    assert set(paths(errors)) == {"spec.targetRef", "spec.mtls.mode", "spec.portLevelMtls",
                                  "spec.portLevelMtls[0]", "spec.portLevelMtls[0].mode"}


@pytest.mark.parametrize("spec", [
    "{}",  # no mtls: UNSET, inherits
    "{mtls: {}}",
    "{mtls: {mode: UNSET}}",
    "{mtls: {mode: DISABLE}}",
    f"{{{SELECTED}, portLevelMtls: {{1: {{}}, 65535: {{mode: UNSET}}}}}}",  # the range's ends; an unset port mode
])
def test_valid_peer_authentications_pass(spec):
    resources, errors, warnings = decode(_pa(spec))
    assert errors == [] and warnings == [] and len(resources) == 1


def test_a_selector_without_labels_is_accepted_with_istios_warning():
    resources, errors, warnings = decode(_pa("{selector: {}, mtls: {mode: STRICT}}"))
    assert errors == [] and len(resources) == 1
    assert "workload selector specified without labels" in by_path(warnings, "spec.selector").message


def test_only_security_istio_io_v1_and_v1beta1_are_accepted():
    for version in ("v1", "v1beta1"):
        _, errors, _ = decode(_pa("{}").replace("security.istio.io/v1", f"security.istio.io/{version}"))
        assert errors == []
    _, errors, _ = decode(_pa("{}").replace("security.istio.io/v1", "security.istio.io/v1alpha1"))
    assert "not supported" in by_path(errors, "apiVersion").message
    _, errors, _ = decode(_pa("{}").replace("security.istio.io/v1", "networking.istio.io/v1"))
    assert "belongs to API group security.istio.io" in by_path(errors, "apiVersion").message


def test_istios_short_names_find_the_kind():
    assert {kind_from_alias(a) for a in ("pa", "peerauthentication", "PeerAuthentications")} == {"PeerAuthentication"}


def _stored(text: str, namespace: str = "default"):
    resources, errors, _ = decode_documents(text, default_namespace=namespace)
    assert errors == []
    return resources


def _policy(name: str, namespace: str, spec: str = "{mtls: {mode: STRICT}}") -> str:
    return f"""apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def test_a_selector_in_the_root_namespace_is_warned_about_since_istio_ignores_it():
    submitted = _stored(_policy("finance", "istio-system", f"{{{SELECTED}, mtls: {{mode: STRICT}}}}"))
    (warning,) = placement_warnings(submitted, [], "istio-system")
    assert warning.path == "spec.selector" and "applies to no workload" in warning.message
    assert placement_warnings(submitted, [], "mesh-root") == []  # elsewhere it is a workload policy


def test_a_second_namespace_wide_policy_is_warned_about_and_the_oldest_one_named():
    older = _stored(_policy("default", "foo"))[0]
    submitted = _stored(_policy("other", "foo"))
    (warning,) = placement_warnings(submitted, [(older, 5)], "istio-system")
    assert warning.path == "metadata.name" and "`default`" in warning.message and "namespace `foo`" in warning.message
    # re-applying the older one warns about nothing: it is the one that applies
    assert placement_warnings([older], [(older, 5), (submitted[0], 9)], "istio-system") == []
    # two new ones in one submission share a revision: the name breaks the tie, as Istio's
    both = _stored(_policy("b", "bar") + "---\n" + _policy("a", "bar"))
    (tie,) = placement_warnings(both, [], "istio-system")
    assert (tie.name, tie.document) == ("b", 1) and "`a`" in tie.message
    mesh = _stored(_policy("second", "istio-system"))
    assert "the mesh already has" in placement_warnings(mesh, [(older, 1), (_stored(_policy("default", "istio-system"))[0], 2)],
                                                         "istio-system")[0].message


def test_what_pilot_stores_and_get_prints_applies_again_with_its_port_keys():
    import msgspec
    import yaml

    from services.pilot.config_api import stored_form

    namespace, text = PEER_AUTHENTICATION["reference: STRICT finance, port 8080 plaintext"]
    (resource,), _, _ = decode_documents(text, default_namespace=namespace)
    stored = msgspec.json.decode(stored_form(resource))
    assert stored["spec"]["portLevelMtls"] == {"8080": {"mode": "DISABLE"}}  # JSON keys are strings
    (again,), errors, _ = decode_documents(yaml.safe_dump(stored))
    assert errors == [] and again == resource

"""services/pilot/validate/decode.py: decoding Istio YAML/JSON into typed resources, with every problem reported."""

from __future__ import annotations

import json

from proto.resources import DestinationRule, VirtualService, WorkloadEntry
from services.pilot.validate import decode_documents
from tests.pilot.validate.documents import GOOD_VS, by_path, decode


def test_a_valid_virtual_service_decodes_to_its_typed_struct():
    resources, errors, warnings = decode(GOOD_VS)
    assert errors == [] and warnings == []
    (vs,) = resources
    assert isinstance(vs, VirtualService)
    assert vs.metadata.namespace == "prod"
    assert vs.spec.http[1].route[0].weight == 80


def test_an_unknown_kind_is_named_and_the_supported_kinds_listed():
    _, errors, _ = decode("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: sc}\nspec: {}\n")
    error = by_path(errors, "kind")
    assert "`Sidecar`" in error.message
    for kind in ("VirtualService", "DestinationRule", "ServiceEntry", "WorkloadEntry"):
        assert kind in error.message


def test_an_api_version_without_a_group_wrong_group_or_unknown_version_is_rejected():
    for api_version, expected in (("v1", "<group>/<version>"), ("security.istio.io/v1", "networking.istio.io"),
                                  ("networking.istio.io/v2", "v1, v1beta1, v1alpha3")):
        _, errors, _ = decode(GOOD_VS.replace("networking.istio.io/v1", api_version))
        assert expected in by_path(errors, "apiVersion").message, api_version


def test_every_accepted_version_decodes():
    for version in ("v1", "v1beta1", "v1alpha3"):
        resources, errors, _ = decode(GOOD_VS.replace("networking.istio.io/v1", f"networking.istio.io/{version}"))
        assert errors == [] and len(resources) == 1


def test_metadata_name_is_required_and_must_be_dns_1123():
    _, errors, _ = decode(GOOD_VS.replace("name: reviews, ", ""))
    assert by_path(errors, "metadata.name").message == "metadata.name is required"
    _, errors, _ = decode(GOOD_VS.replace("name: reviews,", "name: Reviews_1,"))
    assert "DNS-1123" in by_path(errors, "metadata.name").message


def test_all_errors_of_a_submission_are_reported_at_once_with_document_numbers():
    text = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: a}
    spec:
      hosts: [reviews]
      gateways: [Ingress_GW]
      http:
      - match:
        - uri: {prefix: /api, exact: /api}
          headers: {x-user: {regex: "(unclosed"}}
        route:
        - destination: {host: reviews}
          weight: -5
        - destination: {host: reviews}
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: b}
    spec:
      host: reviews
      trafficPolicy: {loadBalancer: {simple: BEST}}
      subsets:
      - {name: v1, labels: {version: v1}}
      - {name: v1, labels: {version: v2}}
    """
    resources, errors, _ = decode(text)
    assert resources == []
    found = {(e.document, e.path) for e in errors}
    assert {
        (1, "spec.gateways[0]"),
        (1, "spec.http[0].match[0].uri"),
        (1, "spec.http[0].match[0].headers[x-user].regex"),
        (1, "spec.http[0].route[0].weight"),
        (2, "spec.trafficPolicy.loadBalancer.simple"),
        (2, "spec.subsets[1].name"),
    } <= found
    assert "invalid value for gateway name" in by_path(errors, "spec.gateways[0]").message
    assert "unknown load balancer" in by_path(errors, "spec.trafficPolicy.loadBalancer.simple").message


def test_a_document_with_errors_is_not_returned_but_its_valid_neighbours_are():
    broken = GOOD_VS.replace("name: reviews,", "name: broken,").replace("weight: 80", "weight: -1")
    resources, errors, _ = decode(GOOD_VS + "---" + broken)
    assert [r.metadata.name for r in resources] == ["reviews"]
    assert {e.document for e in errors} == {2}


def test_a_list_of_items_is_decoded_and_item_errors_carry_the_item_path():
    items = [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "ok"}, "spec": {"host": "reviews"}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "bad"}, "spec": {"host": "reviews", "subsets": [{"name": ""}]}},
    ]
    resources, errors, _ = decode_documents(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    assert [r.metadata.name for r in resources] == ["ok"]
    assert isinstance(resources[0], DestinationRule)
    assert by_path(errors, "items[1].spec.subsets[0].name").document == 1


def test_json_input_and_the_default_namespace_are_honoured():
    doc = {"apiVersion": "networking.istio.io/v1beta1", "kind": "WorkloadEntry",
           "metadata": {"name": "vm-1"}, "spec": {"address": "10.0.0.7", "labels": {"app": "ratings"}}}
    resources, errors, _ = decode_documents(json.dumps(doc), default_namespace="shop")
    assert errors == []
    assert isinstance(resources[0], WorkloadEntry) and resources[0].metadata.namespace == "shop"


def test_a_yaml_syntax_error_says_where():
    _, errors, _ = decode("apiVersion: networking.istio.io/v1\nkind: [VirtualService\n")
    assert len(errors) == 1 and "line" in errors[0].message


def test_exported_kubernetes_metadata_and_status_are_tolerated():
    text = GOOD_VS.replace("namespace: prod}", "namespace: prod, creationTimestamp: 2024-01-02T03:04:05Z, "
                                               "resourceVersion: '42', uid: abc, generation: 3}")
    resources, errors, warnings = decode(text + "status: {}\n")
    assert errors == [] and len(resources) == 1
    assert resources[0].metadata.creation_timestamp == "2024-01-02T03:04:05Z"
    assert by_path(warnings, "status")


def test_an_empty_submission_is_an_error():
    _, errors, _ = decode("\n---\n")
    assert [e.message for e in errors] == ["the submission holds no documents"]


def test_a_name_ending_in_a_newline_is_not_a_dns_1123_name():
    """Found by an attack: the validators' `$` also matched before a trailing newline, so "nltest\\n" was stored
    as a name (and "x-a\\n" as a header name); names are matched whole now."""
    _, errors, _ = decode(GOOD_VS.replace("name: reviews,", 'name: "reviews\\n",'))
    assert "DNS-1123" in by_path(errors, "metadata.name").message

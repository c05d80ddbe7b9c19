"""services/pilot/validate.py: decoding Istio YAML/JSON into typed resources, with every problem reported."""

from __future__ import annotations

import json
import textwrap

import msgspec
import pytest

from proto.resources import DestinationRule, ServiceEntry, VirtualService, WorkloadEntry
from services.pilot.validate import decode_documents
from services.pilot.validate.schema import from_msgspec_error


def decode(text: str, **kwargs):
    return decode_documents(textwrap.dedent(text), **kwargs)


def paths(problems) -> list[str]:
    return [p.path for p in problems]


def by_path(problems, path: str):
    found = [p for p in problems if p.path == path]
    assert found, f"no problem at {path}; got {[(p.path, p.message) for p in problems]}"
    return found[0]


GOOD_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 20
"""


def test_a_valid_virtual_service_decodes_to_its_typed_struct():
    resources, errors, warnings = decode(GOOD_VS)
    assert errors == [] and warnings == []
    (vs,) = resources
    assert isinstance(vs, VirtualService)
    assert vs.metadata.namespace == "prod"
    assert vs.spec.http[1].route[0].weight == 80


def test_a_weight_written_as_a_string_is_an_error_at_its_field_path():
    _, errors, _ = decode(GOOD_VS.replace("weight: 80", 'weight: "80"'))
    error = by_path(errors, "spec.http[1].route[0].weight")
    assert "integer" in error.message and '"80"' in error.message
    assert (error.document, error.kind, error.name, error.namespace) == (1, "VirtualService", "reviews", "prod")


def test_an_unsupported_field_is_named_with_its_path():
    text = GOOD_VS.replace("  - route:\n    - destination: {host: reviews, subset: v1}",
                           "  - retries: {attempts: 2, hedgingPolicy: true}\n    route:\n"
                           "    - destination: {host: reviews, subset: v1}")
    resources, errors, _ = decode(text)
    assert resources == []
    error = by_path(errors, "spec.http[1].retries.hedgingPolicy")
    assert error.message == "field `hedgingPolicy` is not supported by Isthmus yet (or is misspelled)"


def test_a_misspelled_field_gets_a_suggestion():
    _, errors, _ = decode(GOOD_VS.replace("hosts: [reviews]", "hots: [reviews]"))
    assert "did you mean `hosts`" in by_path(errors, "spec.hots").message


def test_an_unknown_kind_is_named_and_the_supported_kinds_listed():
    _, errors, _ = decode("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}\n")
    error = by_path(errors, "kind")
    assert "`Gateway`" in error.message
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
      gateways: [ingress-gw]
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
    assert "not supported yet" in by_path(errors, "spec.gateways[0]").message
    assert "unknown load balancer" in by_path(errors, "spec.trafficPolicy.loadBalancer.simple").message


def test_shape_errors_in_one_document_are_all_reported():
    text = GOOD_VS.replace("weight: 80", 'weight: "80"').replace("weight: 20", "weight: [20]")
    _, errors, _ = decode(text.replace("subset: v2}", "subset: v2, colour: red}"))
    assert {"spec.http[1].route[0].weight", "spec.http[1].route[1].weight",
            "spec.http[0].route[0].destination.colour"} <= set(paths(errors))


def test_a_document_with_errors_is_not_returned_but_its_valid_neighbours_are():
    broken = GOOD_VS.replace("name: reviews,", "name: broken,").replace("weight: 80", "weight: -1")
    resources, errors, _ = decode(GOOD_VS + "---" + broken)
    assert [r.metadata.name for r in resources] == ["reviews"]
    assert {e.document for e in errors} == {2}


def test_weights_that_sum_to_zero_are_rejected_as_istio_does():
    text = GOOD_VS.replace("weight: 80", "weight: 0").replace("weight: 20", "weight: 0")
    _, errors, _ = decode(text)
    assert "total destination weight = 0" in by_path(errors, "spec.http[1].route").message


def test_weights_not_summing_to_100_are_relative_and_only_warned_about():
    resources, errors, warnings = decode(GOOD_VS.replace("weight: 20", "weight: 40"))
    assert errors == [] and len(resources) == 1
    assert "sum to 120" in by_path(warnings, "spec.http[1].route").message


def test_a_destination_without_weight_next_to_weighted_ones_is_a_warning():
    resources, errors, warnings = decode(GOOD_VS.replace("\n      weight: 20", ""))
    assert errors == [] and len(resources) == 1
    assert "no traffic" in by_path(warnings, "spec.http[1].route").message


def test_a_route_needs_at_least_one_destination():
    text = GOOD_VS.replace("    route:\n    - destination: {host: reviews, subset: v2}", "    route: []")
    _, errors, _ = decode(text)
    assert "HTTP route, redirect or direct_response is required" in by_path(errors, "spec.http[0].route").message


def test_a_string_match_needs_exactly_one_of_exact_prefix_regex():
    _, errors, _ = decode(GOOD_VS.replace("headers: {end-user: {exact: jason}}", "method: {}"))
    assert "one of `exact`, `prefix` or `regex`" in by_path(errors, "spec.http[0].match[0].method").message
    _, errors, _ = decode(GOOD_VS.replace("{exact: jason}", "{exact: jason, prefix: ja}"))
    assert "only one of" in by_path(errors, "spec.http[0].match[0].headers[end-user]").message


def test_a_regex_python_would_accept_but_re2_rejects_is_an_error():
    _, errors, _ = decode(GOOD_VS.replace("{exact: jason}", "{regex: '(?!bot).*'}"))
    assert "RE2" in by_path(errors, "spec.http[0].match[0].headers[end-user].regex").message


def test_an_upper_case_header_name_is_accepted_with_a_warning():
    resources, errors, warnings = decode(GOOD_VS.replace("end-user:", "End-User:"))
    assert errors == [] and len(resources) == 1
    assert "`end-user`" in by_path(warnings, "spec.http[0].match[0].headers[End-User]").message


def test_a_rule_after_a_catch_all_rule_is_flagged_as_unreachable():
    text = GOOD_VS + "  - route:\n    - destination: {host: ratings}\n"
    _, errors, warnings = decode(text)
    assert errors == []
    assert "not used" in by_path(warnings, "spec.http[2]").message


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


def test_destination_rule_subsets_and_lb_are_checked():
    text = """
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: reviews}
    spec:
      host: reviews
      trafficPolicy: {loadBalancer: {simple: RANDOM}}
      subsets:
      - name: v1
        labels: {version: v1}
        trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {httpHeaderName: x}}}
      - name: ""
      - name: v3
        trafficPolicy: {loadBalancer: {simple: FASTEST}}
    """
    _, errors, _ = decode(text)
    assert "only one of" in by_path(errors, "spec.subsets[0].trafficPolicy.loadBalancer").message
    assert "cannot be empty" in by_path(errors, "spec.subsets[1].name").message
    assert "unknown load balancer" in by_path(errors, "spec.subsets[2].trafficPolicy.loadBalancer.simple").message


SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  endpoints:
  - {address: 10.1.0.1, ports: {http: 9090}}
"""


def test_a_valid_service_entry_decodes():
    resources, errors, _ = decode(SE)
    assert errors == [] and isinstance(resources[0], ServiceEntry)


def test_service_entry_ports_resolution_location_and_endpoints_are_checked():
    text = (SE.replace("number: 443", "number: 70000").replace("name: http,", "name: https,")
            .replace("MESH_EXTERNAL", "OUTSIDE").replace("address: 10.1.0.1", "address: db.internal")
            .replace("{http: 9090}", "{grpc: 9090}"))
    _, errors, _ = decode(text)
    assert "65535" in by_path(errors, "spec.ports[0].number").message
    assert "already defined" in by_path(errors, "spec.ports[1].name").message
    assert "unknown location" in by_path(errors, "spec.location").message
    assert "not a valid IP" in by_path(errors, "spec.endpoints[0].address").message
    assert "not defined by the service entry" in by_path(errors, "spec.endpoints[0].ports[grpc]").message


def test_dns_round_robin_is_not_supported_yet_and_static_needs_endpoints():
    _, errors, _ = decode(SE.replace("STATIC", "DNS_ROUND_ROBIN"))
    assert "not supported yet" in by_path(errors, "spec.resolution").message
    text = SE.replace("  endpoints:\n  - {address: 10.1.0.1, ports: {http: 9090}}\n", "")
    _, errors, _ = decode(text)
    assert "needs endpoints or a workloadSelector" in by_path(errors, "spec.endpoints").message


def test_a_workload_entry_needs_an_address_and_valid_ports():
    text = """
    apiVersion: networking.istio.io/v1
    kind: WorkloadEntry
    metadata: {name: vm-1}
    spec:
      ports: {http: 0}
      labels: {app: ratings}
    """
    _, errors, _ = decode(text)
    assert by_path(errors, "spec.address").message == "address is required"
    assert "1..65535" in by_path(errors, "spec.ports[http]").message


def test_an_empty_submission_is_an_error():
    _, errors, _ = decode("\n---\n")
    assert [e.message for e in errors] == ["the submission holds no documents"]


def test_msgspec_errors_translate_to_paths_without_the_dollar_prefix():
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "a"},
           "spec": {"hosts": ["a"], "http": [{"fault": {"abort": {"grpcStatus": "UNAVAILABLE"}}, "route": []}]}}
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(doc, type=VirtualService)
    assert from_msgspec_error(info.value) == (
        "spec.http[0].fault.abort.grpcStatus", "field `grpcStatus` is not supported by Isthmus yet (or is misspelled)")
    doc["spec"]["http"][0] = {"route": [{"destination": {"host": "a"}, "weight": "80"}]}
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(doc, type=VirtualService)
    path, message = from_msgspec_error(info.value)
    assert path == "spec.http[0].route[0].weight" and message.startswith("expected")


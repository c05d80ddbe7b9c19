"""services/pilot/validate/workload_group.py: Istio's ValidateWorkloadGroup and validateReadinessProbe, with paths."""

from __future__ import annotations

import pytest

from proto.workload_group import compile_probe
from tests.pilot.validate.documents import by_path, decode, paths

GOOD = """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: reviews, namespace: bookinfo}
spec:
  metadata:
    labels: {app: reviews.vm, class: vm}
    annotations: {note: any text}
  template:
    ports: {http: 9080}
    serviceAccount: bookinfo-reviews
    network: vm-net
    locality: us-east/a
    weight: 3
    labels: {tier: back}
  probe:
    initialDelaySeconds: 5
    timeoutSeconds: 3
    periodSeconds: 4
    successThreshold: 3
    failureThreshold: 3
    httpGet:
      path: /ready
      port: 9080
      host: 127.0.0.1
      scheme: HTTPS
      httpHeaders: [{name: X-Probe_1, value: "yes"}]
"""


def _group(probe: str = "", template: str = "  template: {}\n", metadata: str = "") -> str:
    return ("apiVersion: networking.istio.io/v1beta1\nkind: WorkloadGroup\nmetadata: {name: g}\nspec:\n"
            + metadata + template + probe)


def test_the_documented_example_is_accepted_and_compiles_to_the_pushed_probe():
    resources, errors, warnings = decode(GOOD)
    assert errors == [] and warnings == []
    probe = compile_probe(resources[0].spec.probe, "bookinfo/reviews")
    assert (probe.kind, probe.port, probe.path, probe.scheme, probe.host) == ("http", 9080, "/ready", "https", "127.0.0.1")
    assert (probe.initial_delay_s, probe.timeout_s, probe.period_s) == (5, 3, 4)
    assert probe.headers == [("X-Probe_1", "yes")]


def test_zero_and_unset_probe_numbers_take_istios_defaults():
    resources, errors, _ = decode(_group("  probe: {tcpSocket: {port: 22}}\n"))
    assert errors == []
    probe = compile_probe(resources[0].spec.probe, "default/g")
    assert (probe.kind, probe.timeout_s, probe.period_s, probe.success_threshold, probe.failure_threshold,
            probe.initial_delay_s) == ("tcp", 1, 10, 1, 1, 0)
    resources, _, _ = decode(_group("  probe: {httpGet: {port: 8080}}\n"))
    probe = compile_probe(resources[0].spec.probe, "default/g")
    assert (probe.path, probe.scheme) == ("/", "http")


def test_a_template_is_required():
    _, errors, _ = decode(_group(template="", metadata="  metadata: {labels: {a: b}}\n"))
    assert by_path(errors, "spec.template").message == "template is required"


@pytest.mark.parametrize("field", ["periodSeconds", "initialDelaySeconds", "timeoutSeconds", "successThreshold",
                                   "failureThreshold"])
def test_each_probe_number_must_be_non_negative(field):
    _, errors, _ = decode(_group(f"  probe: {{{field}: -1, exec: {{command: [/bin/true]}}}}\n"))
    assert by_path(errors, f"spec.probe.{field}").message == f"{field} must be non-negative"
    _, errors, _ = decode(_group(f"  probe: {{{field}: 0, exec: {{command: [/bin/true]}}}}\n"))
    assert errors == []


def test_a_probe_needs_exactly_one_method():
    _, errors, _ = decode(_group("  probe: {periodSeconds: 3}\n"))
    assert "one of `httpGet`, `tcpSocket` or `exec` is required" in by_path(errors, "spec.probe").message
    _, errors, _ = decode(_group("  probe: {tcpSocket: {port: 1}, exec: {command: [/bin/true]}}\n"))
    assert "found tcpSocket, exec" in by_path(errors, "spec.probe").message


def test_http_get_port_scheme_path_and_header_names_are_checked():
    _, errors, _ = decode(_group("  probe:\n    httpGet:\n      port: 65536\n      scheme: FTP\n      path: ready\n"
                                 "      httpHeaders: [{name: 'bad name', value: x}, {name: '', value: y},"
                                 " {name: ok, value: \"a\\r\\nb\"}]\n"))
    assert "1..65535" in by_path(errors, "spec.probe.httpGet.port").message
    assert by_path(errors, "spec.probe.httpGet.scheme").message == 'httpGet.scheme must be one of "HTTPS", "HTTP"'
    assert "must start with '/'" in by_path(errors, "spec.probe.httpGet.path").message
    assert "is not a valid header name" in by_path(errors, "spec.probe.httpGet.httpHeaders[0].name").message
    assert by_path(errors, "spec.probe.httpGet.httpHeaders[1].name").message == "header name cannot be empty"
    assert "CR, LF" in by_path(errors, "spec.probe.httpGet.httpHeaders[2].value").message
    _, errors, _ = decode(_group("  probe: {httpGet: {port: 65535, scheme: HTTP, path: /}}\n"))
    assert errors == []


def test_tcp_socket_port_is_checked():
    _, errors, _ = decode(_group("  probe: {tcpSocket: {port: 0}}\n"))
    assert "1..65535" in by_path(errors, "spec.probe.tcpSocket.port").message


def test_exec_needs_a_command_of_non_empty_arguments():
    _, errors, _ = decode(_group("  probe: {exec: {command: []}}\n"))
    assert by_path(errors, "spec.probe.exec.command").message == "exec.command is required"
    _, errors, _ = decode(_group("  probe: {exec: {command: [check, '']}}\n"))
    assert paths(errors) == ["spec.probe.exec.command[1]"]


def test_grpc_is_not_supported_yet():
    _, errors, _ = decode(_group("  probe: {grpc: {port: 9090}}\n"))
    assert "not supported yet" in by_path(errors, "spec.probe.grpc").message


def test_metadata_and_template_labels_ports_weight_and_service_account_are_checked():
    text = _group(metadata="  metadata: {labels: {'bad key!': v}}\n",
                  template="  template: {ports: {HTTP_1: 80, ok: 0}, labels: {k: 'bad value!'}, weight: -1,"
                           " serviceAccount: Not_DNS}\n")
    _, errors, _ = decode(text)
    assert "not a valid label key" in by_path(errors, "spec.metadata.labels[bad key!]").message
    assert "invalid port name" in by_path(errors, "spec.template.ports[HTTP_1]").message
    assert "1..65535" in by_path(errors, "spec.template.ports[ok]").message
    assert "not a valid label value" in by_path(errors, "spec.template.labels[k]").message
    assert by_path(errors, "spec.template.weight").message == "weight -1 < 0"
    assert "DNS-1123" in by_path(errors, "spec.template.serviceAccount").message


def test_metadata_holds_at_most_256_labels_and_annotations():
    def group(n: int) -> str:
        labels = ", ".join(f"k{i}: v" for i in range(n))
        return _group(metadata=f"  metadata: {{labels: {{{labels}}}, annotations: {{{labels}}}}}\n")

    _, errors, _ = decode(group(256))
    assert errors == []
    _, errors, _ = decode(group(257))
    assert set(paths(errors)) == {"spec.metadata.labels", "spec.metadata.annotations"}


def test_a_template_address_is_a_warning_it_is_ignored():
    _, errors, warnings = decode(_group(template="  template: {address: 10.0.0.1}\n"))
    assert errors == [] and "ignored" in by_path(warnings, "spec.template.address").message


def test_an_unknown_probe_field_is_refused_with_its_path():
    _, errors, _ = decode(_group("  probe: {httpGet: {port: 80, method: POST}}\n"))
    assert any(p.startswith("spec.probe.httpGet") for p in paths(errors))

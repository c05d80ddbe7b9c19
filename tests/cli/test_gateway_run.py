"""`isthmus gateway run`: Istio's defaults (namespace, labels, service account), --port pairs, the shared flags."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from isthmus.cli import cli
from isthmus.commands.gateway import default_labels, parse_port_pair


def run(monkeypatch, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    seen: dict = {}

    def fake(options, ports, listen_host):  # type: ignore[no-untyped-def]
        seen.update(options=options, ports=ports, listen_host=listen_host)
    monkeypatch.setattr("proxy.gateway.main.run_gateway", fake)
    result = CliRunner().invoke(cli, ["gateway", "run", *args], env=env)
    return result, seen


def test_defaults_are_istios_for_the_ingress_gateway(monkeypatch):
    result, seen = run(monkeypatch, "--name", "istio-ingressgateway")
    assert result.exit_code == 0, result.output
    options = seen["options"]
    assert (options.service, options.namespace) == ("istio-ingressgateway", "istio-system")
    assert options.labels == {"istio": "ingressgateway", "app": "istio-ingressgateway"}
    assert options.service_account == "istio-ingressgateway-service-account"
    assert seen["ports"] == [(8080, 80), (8443, 443)] and seen["listen_host"] == "0.0.0.0"
    assert default_labels("istio-egressgateway")["istio"] == "egressgateway"
    assert default_labels("edge") == {"istio": "edge", "app": "edge"}


def test_ports_labels_and_shared_flags_are_taken(monkeypatch):
    result, seen = run(monkeypatch, "--name", "edge", "-n", "gw", "--labels", "istio=edge,zone=a", "--port", "0:80",
                       "--port", "9443:443", "--service-account", "edge-sa", "--listen-host", "127.0.0.1",
                       "--max-connections", "7", env={"ISTHMUS_ACCESS_LOG_FORMAT": "json"})
    assert result.exit_code == 0, result.output
    options = seen["options"]
    assert options.labels == {"istio": "edge", "zone": "a"} and options.service_account == "edge-sa"
    assert seen["ports"] == [(0, 80), (9443, 443)] and options.limits.max_connections == 7
    assert options.access_log_format == "json" and options.namespace == "gw"


@pytest.mark.parametrize("value", ["8080", "8080:", "x:80", "8080:0", "8080:70000", ":80"])
def test_a_bad_port_pair_is_a_usage_error(monkeypatch, value: str):
    result, _ = run(monkeypatch, "--name", "gw", "--port", value)
    assert result.exit_code == 2 and "LISTEN:GATEWAY_PORT" in result.output


def test_a_gateway_port_twice_and_a_listen_port_shared_with_the_admin_port_are_usage_errors(monkeypatch):
    result, _ = run(monkeypatch, "--name", "gw", "--port", "8080:80", "--port", "8081:80")
    assert result.exit_code == 2 and "twice" in result.output
    result, _ = run(monkeypatch, "--name", "gw", "--port", "15000:80")
    assert result.exit_code == 2 and "--admin-port" in result.output


def test_parse_port_pair():
    assert parse_port_pair("8080:80") == (8080, 80)
    assert parse_port_pair("0:443") == (0, 443)

"""`isthmus proxy run` flags for opaque TCP (--tcp, --app-tcp): parsed once, bad values are usage errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from isthmus.cli import cli
from proxy.settings import parse_app_tcp, parse_tcp_route


def test_tcp_flags_parse_into_host_ports_and_listeners():
    assert parse_tcp_route("db:5432=15432") == ("db", 5432, 15432)
    assert parse_tcp_route("db.prod.svc.cluster.local:5432=15432") == ("db.prod.svc.cluster.local", 5432, 15432)
    assert parse_app_tcp("5432=5433") == (5432, 5433, 0)
    assert parse_app_tcp("5432=5433@15432") == (5432, 5433, 15432)


@pytest.mark.parametrize("flag, value, words", [
    ("--tcp", "db:5432", "HOST:PORT=LOCAL_PORT"),
    ("--tcp", "db=15432", "HOST:PORT=LOCAL_PORT"),
    ("--tcp", "db:99999=15432", "not a port"),
    ("--app-tcp", "5432", "SERVICE_PORT=APP_PORT"),
    ("--app-tcp", "5432=x", "not a port"),
])
def test_a_bad_tcp_flag_is_a_usage_error_naming_the_value(flag: str, value: str, words: str):
    result = CliRunner().invoke(cli, ["proxy", "run", "--service", "a", "--service-port", "80", "--app-port", "81",
                                      flag, value])
    assert result.exit_code == 2 and words in result.output


def test_limit_flags_build_the_listeners_limits_in_bytes_and_seconds():
    from proxy.http.limits import Limits
    from proxy.settings import build_limits

    assert build_limits() == Limits()  # the flags' defaults are the listeners' defaults (Envoy's)
    limits = build_limits(max_request_headers_kb=8, max_request_url_kb=2, request_timeout=0, max_connections=5)
    assert (limits.max_head_bytes, limits.max_url_bytes, limits.request_timeout, limits.max_connections) == (
        8192, 2048, 0, 5)


@pytest.mark.parametrize("flag, value", [("--max-request-headers-kb", "0"), ("--max-request-headers", "0"),
                                         ("--stream-idle-timeout", "-1"), ("--max-connections", "x")])
def test_a_bad_limit_flag_is_a_usage_error(flag: str, value: str):
    result = CliRunner().invoke(cli, ["proxy", "run", "--service", "a", "--service-port", "80", "--app-port", "81",
                                      flag, value])
    assert result.exit_code == 2 and flag in result.output


def test_limit_flags_read_their_environment_variables(monkeypatch):
    seen = {}
    monkeypatch.setattr("proxy.identity.x509_client.spawn_early", lambda count: [])  # no X.509 workers to reap
    monkeypatch.setattr("proxy.main.run_proxy", lambda options, early: seen.setdefault("limits", options.limits))
    result = CliRunner().invoke(cli, ["proxy", "run", "--service", "a", "--service-port", "80", "--app-port", "81"],
                                env={"ISTHMUS_MAX_REQUEST_HEADERS_KB": "8", "ISTHMUS_STREAM_IDLE_TIMEOUT": "30"})
    assert result.exit_code == 0, result.output
    assert seen["limits"].max_head_bytes == 8192 and seen["limits"].stream_idle_timeout == 30.0


def test_dns_port_is_off_by_default_and_reaches_the_sidecars_options(monkeypatch):
    seen = []
    monkeypatch.setattr("proxy.identity.x509_client.spawn_early", lambda count: [])  # no X.509 workers to reap
    monkeypatch.setattr("proxy.main.run_proxy", lambda options, early: seen.append(options.dns_port))
    base = ["proxy", "run", "--service", "a", "--service-port", "80", "--app-port", "81"]
    assert CliRunner().invoke(cli, base).exit_code == 0
    assert CliRunner().invoke(cli, [*base, "--dns-port", "15053"]).exit_code == 0
    assert CliRunner().invoke(cli, base, env={"ISTHMUS_DNS_PORT": "15054"}).exit_code == 0
    assert seen == [0, 15053, 15054]


@pytest.mark.parametrize("value, words", [("65536", "--dns-port"), ("x", "--dns-port"),
                                          ("15001", "--outbound-port and --dns-port are both port 15001")])
def test_a_bad_dns_port_is_a_usage_error(value: str, words: str):
    result = CliRunner().invoke(cli, ["proxy", "run", "--service", "a", "--service-port", "80", "--app-port", "81",
                                      "--dns-port", value])
    assert result.exit_code == 2 and words in result.output, result.output


@pytest.mark.parametrize("value, words", [
    ("other/reviews", "must be in --namespace 'shop', not 'other'"),
    ("Reviews!", "is not a WorkloadGroup name"),
    ("shop/", "is not a WorkloadGroup name"),
])
def test_a_workload_group_of_another_namespace_or_a_bad_name_is_a_usage_error(value: str, words: str):
    result = CliRunner().invoke(cli, ["proxy", "run", "--service", "a", "--namespace", "shop", "--service-port", "80",
                                      "--app-port", "81", "--workload-group", value])
    assert result.exit_code == 2 and words in result.output


def test_a_workload_group_is_named_alone_or_with_its_own_namespace():
    from isthmus.commands.proxy import workload_group_name

    assert workload_group_name("reviews", "shop") == "reviews"
    assert workload_group_name("shop/reviews", "shop") == "reviews"
    assert workload_group_name("", "shop") == ""

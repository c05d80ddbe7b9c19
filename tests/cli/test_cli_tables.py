"""`isthmus get` tables: every kind's third column says something about each resource (never a column of `-`),
and `isthmus --help` promises only what exists."""

from __future__ import annotations

from click.testing import CliRunner

from isthmus.cli import cli, render_table
from proto.resources import KINDS


def test_a_rate_limit_table_shows_what_each_one_selects() -> None:
    limits = [{"metadata": {"name": "reviews"}, "spec": {"selector": {"matchLabels": {"version": "v1", "app": "reviews"}}}},
              {"metadata": {"name": "everyone"}, "spec": {}}]
    table = render_table("RateLimit", limits).splitlines()
    assert table[0].split()[2] == "SELECTOR"
    assert table[1].split()[:3] == ["everyone", "default", "<all>"]
    assert table[2].split()[:3] == ["reviews", "default", "app=reviews,version=v1"]


def test_a_peer_authentication_table_shows_each_ones_mode_unset_included() -> None:
    policies = [{"metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}},
                {"metadata": {"name": "finance", "namespace": "foo"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}}]
    table = render_table("PeerAuthentication", policies).splitlines()
    assert table[0].split()[2] == "MODE"
    assert table[1].split()[:3] == ["finance", "foo", "UNSET"]
    assert table[2].split()[:3] == ["default", "istio-system", "STRICT"]


def test_authorization_and_request_authentication_tables_show_the_action_and_the_issuers() -> None:
    policies = [{"metadata": {"name": "deny", "namespace": "foo"}, "spec": {"action": "DENY", "rules": [{}]}},
                {"metadata": {"name": "allow-nothing", "namespace": "foo"}, "spec": {}}]
    table = render_table("AuthorizationPolicy", policies).splitlines()
    assert table[0].split()[2] == "ACTION"
    assert [line.split()[:3] for line in table[1:]] == [["allow-nothing", "foo", "ALLOW"], ["deny", "foo", "DENY"]]
    jwt = [{"metadata": {"name": "jwt"}, "spec": {"jwtRules": [{"issuer": "a@x"}, {"issuer": "https://b"}]}},
           {"metadata": {"name": "none"}, "spec": {}}]
    table = render_table("RequestAuthentication", jwt).splitlines()
    assert table[0].split()[2] == "ISSUERS"
    assert [line.split()[:3] for line in table[1:]] == [["jwt", "default", "a@x,https://b"], ["none", "default", "-"]]


def test_every_kind_has_a_third_column_filled_from_its_spec() -> None:
    specs = {"VirtualService": {"hosts": ["reviews"]}, "DestinationRule": {"host": "reviews"},
             "ServiceEntry": {"hosts": ["api.example.com"]}, "WorkloadEntry": {"address": "10.0.0.1"},
             "RateLimit": {"selector": {"matchLabels": {"app": "reviews"}}},
             "PeerAuthentication": {"mtls": {"mode": "STRICT"}}, "AuthorizationPolicy": {},
             "RequestAuthentication": {"jwtRules": [{"issuer": "a"}]},
             "Telemetry": {"selector": {"matchLabels": {"app": "reviews"}}},
             "Gateway": {"selector": {"istio": "ingressgateway"}},
             "WorkloadGroup": {"template": {}, "probe": {"httpGet": {"port": 9080, "path": "/ready"}}}}
    assert set(specs) == set(KINDS)  # a new kind needs its column here too
    for kind, spec in specs.items():
        row = render_table(kind, [{"metadata": {"name": "x"}, "spec": spec}]).splitlines()[1].split()
        assert row[2] != "-", kind


def test_help_names_what_isthmus_does_and_nothing_as_unbuilt() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    assert "traffic management" in text and "metrics, traces and a dashboard" in text
    assert "not built yet" not in text and "dashboard" in text
    assert "rl" in CliRunner().invoke(cli, ["get", "--help"]).output


def test_the_workload_group_table_shows_its_probe() -> None:
    groups = [{"metadata": {"name": "http"}, "spec": {"probe": {"httpGet": {"port": 9080, "path": "/ready"}}}},
              {"metadata": {"name": "none"}, "spec": {"template": {}}},
              {"metadata": {"name": "run"}, "spec": {"probe": {"exec": {"command": ["check", "--quick"]}}}},
              {"metadata": {"name": "tcp"}, "spec": {"probe": {"tcpSocket": {"port": 22}}}}]
    table = render_table("WorkloadGroup", groups).splitlines()
    assert table[0].split()[2] == "PROBE"
    assert [line.split(None, 2)[2].rsplit(None, 1)[0].strip() for line in table[1:]] == [
        "httpGet :9080/ready", "-", "exec check --quick", "tcpSocket :22"]

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

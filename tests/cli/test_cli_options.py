"""Every flag's value is checked before anything runs: a bad one is one `error:` line naming the flag, exit 2
(docs/cli.md), never a traceback, a silently disabled timeout or a bind failure blamed on the wrong flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

UNREACHABLE = "nats://127.0.0.1:1"
RUN = ["proxy", "run", "--service", "reviews", "--service-port", "9080", "--app-port", "9081"]


def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", *args], capture_output=True, text=True, timeout=60)


def assert_usage_error(result: subprocess.CompletedProcess[str], flag: str, words: str = "") -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"'{flag}'" in lines[0] and words in lines[0], lines[0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0.05"])
def test_the_request_timeout_must_be_a_finite_number_in_range(value: str) -> None:
    assert_usage_error(isthmus("--nats", UNREACHABLE, "--request-timeout", value, "get", "vs"), "--request-timeout")


def test_a_request_timeout_at_its_bounds_is_accepted() -> None:
    for value in ("0.1", "3600"):
        result = isthmus("--nats", UNREACHABLE, "--request-timeout", value, "get", "vs")
        assert result.returncode == 1 and "cannot reach pilot" in result.stderr, result.stderr


@pytest.mark.parametrize("flag", ["--request-headers-timeout", "--request-timeout", "--stream-idle-timeout",
                                  "--pending-grace", "--span-flush-interval"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_proxy_run_timeouts_refuse_nan_and_infinity(flag: str, value: str) -> None:
    assert_usage_error(isthmus("--nats", UNREACHABLE, *RUN, flag, value), flag, "finite")


@pytest.mark.parametrize("flag, value", [("--lease-ttl", "301"), ("--retry-buffer-limit", str(2**40)),
                                         ("--max-connections", "10000000"), ("--span-batch", "0"),
                                         ("--span-queue", "0"), ("--span-max-tag-length", "15"),
                                         ("--span-flush-interval", "0")])
def test_proxy_run_integers_refuse_absurd_values(flag: str, value: str) -> None:
    assert_usage_error(isthmus("--nats", UNREACHABLE, *RUN, flag, value), flag)


def test_proxy_run_refuses_a_span_queue_smaller_than_a_batch() -> None:
    env_run = subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", UNREACHABLE, *RUN],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "ISTHMUS_SPAN_BATCH": "101", "ISTHMUS_SPAN_QUEUE": "100"})
    assert_usage_error(env_run, "--span-queue", "less than --span-batch 101")


@pytest.mark.parametrize("flag, value, words", [
    ("--service", "BAD_NAME!", "DNS-1123 label"),
    ("--service", "", "DNS-1123 label"),
    ("--service", "a" * 64, "DNS-1123 label"),
    ("--namespace", "Bad NS", "DNS-1123 label"),
    ("--service-account", "Bad SA", "DNS-1123 subdomain"),
    ("--address", "not-an-ip", "not an IP address"),
    ("--locality", "a/b/c/d", "REGION/ZONE/SUBZONE"),
    ("--locality", "a//c", "REGION/ZONE/SUBZONE"),
    ("--labels", "a=b,a=c", "given twice"),
    ("--labels", "bad key!=v", "label name"),
    ("--labels", "k=" + "v" * 64, "label value"),
    ("--labels", "-k=v", "label name"),
    ("--labels", "Example.COM/k=v", "label name"),
])
def test_proxy_run_refuses_what_the_registry_would_not_accept(flag: str, value: str, words: str) -> None:
    args = list(RUN)
    if flag == "--service":
        args[args.index("--service") + 1] = value
    else:
        args += [flag, value]
    assert_usage_error(isthmus("--nats", UNREACHABLE, *args), flag, words)


@pytest.mark.parametrize("extra, first, second", [
    (["--inbound-port", "9081"], "--app-port", "--inbound-port"),
    (["--admin-port", "15001"], "--outbound-port", "--admin-port"),
    (["--tcp", "db:5432=15006"], "--inbound-port", "--tcp"),
    (["--app-tcp", "5432=5433@15000"], "--admin-port", "--app-tcp"),
])
def test_two_listeners_on_one_port_name_both_flags(extra: list[str], first: str, second: str) -> None:
    result = isthmus("--nats", UNREACHABLE, *RUN, *extra)
    assert_usage_error(result, second, f"{first} and {second} are both port")


def test_valid_identity_flags_pass_the_checks() -> None:
    from isthmus.options import check_proxy_identity, parse_labels

    check_proxy_identity("reviews", "bookinfo", "::1", "us-east/zone-a/rack1", "bookinfo-reviews")
    assert parse_labels("app=reviews,version=v1,example.com/tier=,k=" + "v" * 63) == {
        "app": "reviews", "version": "v1", "example.com/tier": "", "k": "v" * 63}


@pytest.mark.parametrize("url", ["garbage", "http://127.0.0.1:4222", "nats://h:99999", "nats://:4222"])
def test_a_malformed_nats_url_is_a_usage_error_not_an_unreachable_bus(url: str) -> None:
    assert_usage_error(isthmus("--nats", url, "get", "vs"), "--nats", "NATS URL")


def test_usage_errors_are_one_error_line_too() -> None:
    result = isthmus("--nats", UNREACHABLE, "get")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: Missing argument 'KIND'. (see 'isthmus get --help')"


def test_an_unreachable_bus_names_the_reason() -> None:
    result = isthmus("--nats", UNREACHABLE, "get", "vs")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach pilot on {UNREACHABLE} (")


@pytest.mark.parametrize("argv", [["-m", "services.registry", "--lease-ttl", "0"],
                                  ["-m", "services.pilot", "--lease-ttl", "99999999999"],
                                  ["-m", "examples.bookinfo.demo", "--rate", "nan"],
                                  ["-m", "examples.bookinfo.demo", "--rate", "inf"]])
def test_the_services_and_the_demo_refuse_absurd_numbers_as_usage_errors(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, *argv, "--nats", UNREACHABLE], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and argv[2] in result.stderr


def test_the_cli_pilot_timeout_and_the_sidecar_request_timeout_read_different_variables(monkeypatch):
    """ISTHMUS_REQUEST_TIMEOUT is the sidecar's whole-request timeout (0: off); the CLI's wait for pilot
    has its own variable, so neither setting leaks into the other."""
    from click.testing import CliRunner

    from isthmus.cli import cli

    monkeypatch.setenv("ISTHMUS_REQUEST_TIMEOUT", "0")  # valid for a sidecar, out of range for the CLI
    assert CliRunner().invoke(cli, ["proxy", "run", "--help"]).exit_code == 0
    monkeypatch.setenv("ISTHMUS_PILOT_TIMEOUT", "nan")
    result = CliRunner().invoke(cli, ["get", "vs"])
    assert result.exit_code == 2 and "request-timeout" in result.output


@pytest.mark.parametrize("token", ["garbage", "0123456789abcdef." + "x" * 42, "0123456789abcdef." + "x" * 44,
                                   "x" * 70 * 1024])
def test_proxy_run_refuses_a_malformed_token_before_asking_the_bus(token: str) -> None:
    """A token's shape is fixed (16 hex, a dot, 43 base64url): one byte short or over, or 70 KiB (which would
    overflow NATS's control line and read as an unreachable bus), is a usage error at once."""
    assert_usage_error(isthmus("--nats", UNREACHABLE, *RUN, "--token", token), "--token", "malformed")


def _run_with_token_file(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    from isthmus.launch import free_port

    ports = [str(free_port()) for _ in range(3)]  # never the default 15000/15001/15006: others run sidecars
    env = {k: v for k, v in os.environ.items() if k not in ("ISTHMUS_CONFIG", "ISTHMUS_TOKEN")}
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", UNREACHABLE, *RUN, "--inbound-port", ports[0],
                           "--outbound-port", ports[1], "--admin-port", ports[2], "--token-file", path],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


@pytest.mark.parametrize("content", [None, "", "  \n\n"])
def test_proxy_run_names_a_missing_or_empty_token_file_when_it_needs_the_token(tmp_path: Path,
                                                                               content: str | None) -> None:
    """Found by an attack: a --token-file that was missing or empty read as "no bus credentials: pass a bootstrap
    token", as if none had been given. Not a usage error (a --state-dir may hold what is needed), but when the
    token is needed, the one line says which file and why."""
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    result = _run_with_token_file(tmp_path, str(path))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"--token-file {path}" in last, result.stderr
    assert ("No such file" in last) if content is None else ("is empty" in last), last


@pytest.mark.parametrize("content", ["garbage\n", "0123456789abcdef." + "x" * 43 + "x\n"])
def test_proxy_run_refuses_a_token_file_that_holds_no_token_before_asking_the_bus(tmp_path: Path, content: str) -> None:
    """The --token check's sibling (found by an attack: a 130 KiB token file hung `proxy run` on NATS's control
    line like the 70 KiB --token did, and /dev/zero was read without end). At most MAX_TOKEN_FILE bytes are read."""
    path = tmp_path / "token"
    path.write_text(content)
    assert_usage_error(_run_with_token_file(tmp_path, str(path)), "--token-file", "malformed")


def test_proxy_run_reads_a_bounded_prefix_of_a_huge_or_endless_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 130 * 1024)
    for name in (str(path), "/dev/zero"):
        assert_usage_error(_run_with_token_file(tmp_path, name), "--token-file", "more than 4096 bytes")


def test_a_token_file_is_read_up_to_its_bound(tmp_path: Path) -> None:
    from runtime.bootstrap_tokens import MAX_TOKEN_FILE, TokenRefused, read_token_file

    token = "0123456789abcdef." + "x" * 43
    path = tmp_path / "token"
    path.write_text(token.ljust(MAX_TOKEN_FILE))  # at the bound (spaces around a token are fine)
    assert read_token_file(str(path)) == token
    path.write_text(token.ljust(MAX_TOKEN_FILE + 1))  # one byte over
    with pytest.raises(TokenRefused, match="more than"):
        read_token_file(str(path))


def test_names_ending_in_a_newline_are_refused_by_the_cli_checks() -> None:
    from isthmus import options
    from isthmus.commands.up import TRUST_DOMAIN

    assert options.DNS1123_LABEL.match("web") and not options.DNS1123_LABEL.match("web\n")
    assert not options.DNS1123_SUBDOMAIN.match("a.b\n") and not options.LABEL_NAME.match("app\n")
    assert not TRUST_DOMAIN.match("cluster.local\n")


@pytest.mark.parametrize("flag, value", [("--metrics-interval", "nan"), ("--metrics-interval", "0.05"),
                                         ("--metrics-interval", "3601"), ("--metrics-max-series", "0"),
                                         ("--workload-name", "w" * 254), ("--workload-name", " padded"),
                                         ("--cluster", "east\nwest")])
def test_proxy_run_metrics_flags_refuse_what_metrics_could_not_carry(flag: str, value: str) -> None:
    assert_usage_error(isthmus("--nats", UNREACHABLE, *RUN, flag, value), flag)


def test_up_help_names_the_port_range_variable() -> None:
    """ISTHMUS_PORT_RANGE is read by `up` (checked before it starts anything): its help says so."""
    result = isthmus("up", "--help")
    assert result.returncode == 0, result.stderr
    assert "ISTHMUS_PORT_RANGE=LOW-HIGH" in result.stdout

"""`isthmus join` without a control plane (isthmus/commands/join.py, isthmus/join_files.py): the files it writes under
a temporary root (env file, token, bus credentials, unit template; modes; nothing secret printed), the unit passing
`systemd-analyze verify`, and its refusals: the bus unreachable, a taken port, an earlier join without --force, a
malformed token, a value systemd could not pass as one word. The bus itself: tests/integration/test_join.py."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from isthmus.cli import cli
from isthmus.commands import join as join_command
from isthmus.join_files import JoinFileError, read_env, sidecar_args
from isthmus.launch import free_port
from runtime.clientconfig import NatsClient
from tests.deploy.cli_parse import parse

TOKEN = "0123456789abcdef." + "s3cr3t-" * 6 + "x"
PASSWORD = "bus-password-never-printed"
URL = "nats://127.0.0.1:4222"


@pytest.fixture
def bus_ok(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The bus answers and grants credentials (what tests/integration/test_join.py does for real)."""
    calls: list[tuple] = []
    monkeypatch.setattr(join_command, "check_reachable", lambda url: [url])

    def redeem(url: str, token: str, namespace: str, sa: str, wait: float, tls_ca: str = "") -> NatsClient:
        calls.append((url, token, namespace, sa))
        return NatsClient(url=url, user="proxy.0011223344556677", password=PASSWORD, inbox_prefix="_INBOX_p.x")

    monkeypatch.setattr(join_command, "redeem", redeem)
    return calls


def run(*args: str) -> "object":
    return CliRunner().invoke(cli, ["join", *args], env={"ISTHMUS_TOKEN": None, "ISTHMUS_CONFIG": None})


def base(root: Path, *more: str) -> list[str]:
    return ["--token", TOKEN, "--control-plane", URL, "--service", "reviews", "--service-port", "9080",
            "--app-port", str(free_port()), "--inbound-port", str(free_port()), "--outbound-port", str(free_port()),
            "--admin-port", str(free_port()), "--root", str(root), *more]


def test_join_writes_the_sidecars_files_under_the_root_private_and_prints_no_secret(tmp_path: Path,
                                                                                    bus_ok: list[tuple]) -> None:
    result = run(*base(tmp_path, "--labels", "app=reviews,version=v1", "--dns-port", str(free_port()), "--systemd"))
    assert result.exit_code == 0, result.output
    assert bus_ok == [(URL, TOKEN, "default", "reviews")]  # the service account defaults to the service's name
    config = tmp_path / "etc/isthmus"
    env = read_env(config / "sidecar-reviews.env")
    assert env["ISTHMUS_NATS_URL"] == URL
    args = env["ISTHMUS_SIDECAR_ARGS"].split()
    assert args[:6] == ["--service", "reviews", "--namespace", "default", "--service-account", "reviews"]
    assert "--dns-port" in args and "--labels" in args
    assert (config / "sidecar-reviews.token").read_text().strip() == TOKEN
    state = tmp_path / "var/lib/isthmus-sidecar-reviews"
    assert PASSWORD in (state / "bus-client.yaml").read_text()
    for path in (config / "sidecar-reviews.env", config / "sidecar-reviews.token", state / "bus-client.yaml"):
        assert path.stat().st_mode & 0o777 == 0o600, path
        assert path.parent.stat().st_mode & 0o777 == 0o700, path.parent
    unit = tmp_path / "etc/systemd/system/isthmus-sidecar@.service"
    assert f"ExecStart={Path(sys.executable).parent}/isthmus proxy run --token-file %d/token" in unit.read_text()
    assert "LoadCredential=token:/etc/isthmus/sidecar-%i.token" in unit.read_text()
    assert TOKEN not in result.output and TOKEN.split(".")[1] not in result.output and PASSWORD not in result.output
    # under a --root, systemctl is printed, not run
    assert "would run: systemctl daemon-reload" in result.output
    assert "would run: systemctl enable --now isthmus-sidecar@reviews.service" in result.output


def test_without_systemd_it_prints_the_proxy_run_command_which_our_cli_parses(tmp_path: Path, bus_ok: list) -> None:
    state = tmp_path / "state"
    result = run(*base(tmp_path / "root", "--state-dir", str(state), "--service-account", "rev-sa"))
    assert result.exit_code == 0, result.output
    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[1:5] == ["--nats", URL, "proxy", "run"]
    assert command[command.index("--state-dir") + 1] == str(state)
    assert command[command.index("--token-file") + 1] == str(tmp_path / "root/etc/isthmus/sidecar-reviews.token")
    assert (state / "bus-client.yaml").exists() and bus_ok[0][3] == "rev-sa"
    parse(command[1:])  # every flag it wrote is one `proxy run` takes


def test_the_written_unit_passes_systemd_analyze_verify(tmp_path: Path, bus_ok: list) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    assert run(*base(tmp_path / "root")).exit_code == 0
    instance = tmp_path / "isthmus-sidecar@reviews.service"
    instance.write_text((tmp_path / "root/etc/systemd/system/isthmus-sidecar@.service").read_text())
    result = subprocess.run([analyze, "verify", "--man=no", str(instance)], capture_output=True, text=True,
                            timeout=120)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "isthmus-" in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr


def test_an_unreachable_bus_is_one_line_naming_each_url_and_the_cause(tmp_path: Path) -> None:
    dead1, dead2 = f"nats://127.0.0.1:{free_port()}", f"nats://127.0.0.1:{free_port()}"
    args = base(tmp_path)
    args[args.index("--control-plane") + 1] = f"{dead1},{dead2}"
    result = run(*args)
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: cannot reach the bus")
    assert f"{dead1}: connection refused" in line and f"{dead2}: connection refused" in line
    assert not (tmp_path / "etc").exists()  # nothing written


def test_one_dead_node_among_several_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        alive, dead = f"nats://127.0.0.1:{live.getsockname()[1]}", f"nats://127.0.0.1:{free_port()}"
        assert join_command.check_reachable(f"{dead},{alive}") == [alive]
    assert f"warning: {dead}: connection refused" in capsys.readouterr().err


def test_a_taken_port_is_refused_naming_the_flag(tmp_path: Path, bus_ok: list) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = base(tmp_path)
        args[args.index("--admin-port") + 1] = str(port)
        result = run(*args)
    assert result.exit_code == 1 and f"error: --admin-port {port}: 127.0.0.1:{port} (TCP) is taken" in result.output
    assert bus_ok == [] and not (tmp_path / "etc").exists()


def test_the_dns_port_is_checked_for_udp_too(tmp_path: Path, bus_ok: list) -> None:
    # a UDP port whose TCP twin is free (other test workers bind TCP ports meanwhile: try another if taken)
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            result = run(*base(tmp_path, "--dns-port", str(port)))
        if "(TCP) is taken" not in result.output:
            break
    assert result.exit_code == 1 and f"--dns-port {port}: 127.0.0.1:{port} (UDP) is taken" in result.output


def test_an_earlier_join_is_kept_without_force_and_replaced_with_it(tmp_path: Path, bus_ok: list) -> None:
    assert run(*base(tmp_path)).exit_code == 0
    env = tmp_path / "etc/isthmus/sidecar-reviews.env"
    first = env.read_text()
    again = run(*base(tmp_path, "--labels", "app=reviews"))
    assert again.exit_code == 1 and "reviews already joined on this machine" in again.output
    assert "--force" in again.output and env.read_text() == first and len(bus_ok) == 1
    forced = run(*base(tmp_path, "--labels", "app=reviews", "--force"))
    assert forced.exit_code == 0, forced.output
    assert "--labels app=reviews" in env.read_text() and len(bus_ok) == 2


def test_a_malformed_or_missing_token_is_refused_before_the_bus(tmp_path: Path, bus_ok: list) -> None:
    args = base(tmp_path)
    args[args.index("--token") + 1] = "not-a-token"
    result = run(*args)
    assert result.exit_code == 1 and "the token is malformed" in result.output and "not-a-token" not in result.output
    args = base(tmp_path)
    del args[0:2]
    assert run(*args).exit_code == 2
    (tmp_path / "t").write_text(TOKEN)
    assert run(*base(tmp_path), "--token-file", str(tmp_path / "t")).exit_code == 2  # both
    assert bus_ok == []


def test_systemd_with_run_or_a_state_dir_is_a_usage_error(tmp_path: Path, bus_ok: list) -> None:
    assert run(*base(tmp_path, "--systemd", "--run")).exit_code == 2
    assert run(*base(tmp_path, "--systemd", "--state-dir", str(tmp_path / "s"))).exit_code == 2


def test_a_value_systemd_would_split_is_refused() -> None:
    assert sidecar_args([("--labels", "app=reviews,version=v1")]) == "--labels app=reviews,version=v1"
    for bad in ("a b", "a'b", 'a"b', "a$b", "a%b", "a\\b", ""):
        with pytest.raises(JoinFileError):
            sidecar_args([("--labels", bad)])


def test_the_same_port_twice_is_a_usage_error(tmp_path: Path, bus_ok: list) -> None:
    args = base(tmp_path)
    args[args.index("--outbound-port") + 1] = args[args.index("--inbound-port") + 1]
    result = run(*args)
    assert result.exit_code == 2 and "--outbound-port" in result.output

"""A client config others can read (it holds the operator's password) is named in a warning, and still used."""

from __future__ import annotations

from pathlib import Path

from runtime.clientconfig import ClientConfig, NatsClient, exposure, save
from tests.cli.test_cli_options import UNREACHABLE, isthmus


def config_file(tmp_path: Path, mode: int, password: str = "secret") -> Path:
    path = tmp_path / "isthmus.yaml"
    save(path, ClientConfig(nats=NatsClient(url=UNREACHABLE, user="operator", password=password)))
    path.chmod(mode)
    return path


def test_a_client_config_others_can_read_is_warned_about_and_still_used(tmp_path: Path) -> None:
    path = config_file(tmp_path, 0o644)
    result = isthmus("--config", str(path), "token", "create", "-n", "a", "--service-account", "b")
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"warning: the client config {path} is mode 0644: other users can read its password; " \
                       f"chmod 600 {path}", result.stderr
    assert result.returncode == 1 and "cannot reach the ca" in result.stderr  # used: its url was asked


def test_a_client_config_at_0600_or_without_a_password_is_not_warned_about(tmp_path: Path) -> None:
    path = config_file(tmp_path, 0o600)
    assert exposure(path, ClientConfig(nats=NatsClient(password="p"))) == ""
    path.chmod(0o640)  # one bit past 0600: the group
    assert "mode 0640" in exposure(path, ClientConfig(nats=NatsClient(password="p")))
    assert exposure(path, ClientConfig(nats=NatsClient())) == ""  # nothing secret in it
    result = isthmus("--config", str(config_file(tmp_path, 0o600)), "token", "create", "-n", "a",
                     "--service-account", "b")
    assert "warning" not in result.stderr and "cannot reach the ca" in result.stderr, result.stderr

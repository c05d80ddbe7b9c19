"""`isthmus dashboard` prints the telemetry service's URL from the client config `isthmus up` wrote, opens a
browser only where one can open, and says so when nothing answers; `up`'s dashboard flags are checked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from isthmus.cli import cli
from isthmus.up import check_ports, dashboard_url
from runtime.clientconfig import ClientConfig, NatsClient, save
from tests.cli.test_cli_options import assert_usage_error, isthmus


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:  # quiet: the test reads answers, not the server's log
        pass


@pytest.fixture
def telemetry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def config_with(tmp_path: Path, url: str) -> Path:
    return save(tmp_path / "isthmus.yaml", ClientConfig(nats=NatsClient(url="nats://127.0.0.1:1"), dashboard=url))


def run(config: Path, *args: str, env: dict[str, str] | None = None, opened: list[str] | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None):  # type: ignore[no-untyped-def]
    if monkeypatch is not None and opened is not None:
        monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    return CliRunner().invoke(cli, ["--config", str(config), "dashboard", *args], env=env or {})


def test_it_prints_the_url_up_saved_and_opens_a_browser_where_a_display_is(
        tmp_path: Path, telemetry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("sys.platform", "linux")
    result = run(config_with(tmp_path, telemetry), env={"DISPLAY": ":0"}, opened=opened, monkeypatch=monkeypatch)
    assert result.exit_code == 0 and result.output == f"{telemetry}\n"
    assert opened == [telemetry]


def test_no_browser_or_no_display_only_prints(tmp_path: Path, telemetry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    config = config_with(tmp_path, telemetry)
    assert run(config, "--no-browser", env={"DISPLAY": ":0"}, opened=opened, monkeypatch=monkeypatch).exit_code == 0
    assert run(config, opened=opened, monkeypatch=monkeypatch).exit_code == 0  # headless: a text browser would
    assert opened == []  # take over the terminal


def test_nothing_answering_is_an_error_after_the_url(tmp_path: Path) -> None:
    result = isthmus("--config", str(config_with(tmp_path, "http://127.0.0.1:1/")), "dashboard", "--no-browser")
    assert result.returncode == 1 and result.stdout == "http://127.0.0.1:1/\n"
    assert "does not answer at http://127.0.0.1:1/" in result.stderr and "isthmus up" in result.stderr


def test_without_a_saved_url_it_uses_the_default_port(tmp_path: Path) -> None:
    path = save(tmp_path / "isthmus.yaml", ClientConfig(nats=NatsClient(url="nats://127.0.0.1:1")))
    result = isthmus("--config", str(path), "dashboard", "--no-browser")
    assert result.stdout == "http://127.0.0.1:20001/\n"


def test_up_checks_its_dashboard_flags() -> None:
    assert_usage_error(isthmus("up", "--dashboard-port", "0"), "--dashboard-port")
    assert_usage_error(isthmus("up", "--dashboard-port", "65536"), "--dashboard-port")
    assert_usage_error(isthmus("up", "--dashboard-bind", "example.org"), "--dashboard-bind", "not an IP address")
    assert "collides" in (check_ports(4222, 2379, 4222) or "")
    assert dashboard_url("0.0.0.0", 20001) == "http://127.0.0.1:20001/"
    assert dashboard_url("::1", 8080) == "http://[::1]:8080/"
    assert dashboard_url("127.0.0.1", 20001) == "http://127.0.0.1:20001/"

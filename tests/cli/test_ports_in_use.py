"""Every port our processes bind, when taken: one `error:` line naming the flag, exit 2, no traceback.

Each case holds the port with a listening socket of its own, runs the real command as a user would, and
reads what it printed. Nothing here needs a bus: the commands fail before they reach one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from isthmus.launch import free_port, free_port_pair, project_env

ROOT = Path(__file__).resolve().parents[2]
NO_BUS = "nats://127.0.0.1:1"  # never reached: binding fails first


@contextmanager
def held_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as holder:
        holder.bind((host, free_port() if host == "127.0.0.1" else 0))
        holder.listen()
        yield holder.getsockname()[1]


def run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=project_env(), cwd=cwd)


def proxy_run(*extra: str) -> list[str]:
    return [sys.executable, "-m", "isthmus.cli", "--nats", NO_BUS, "proxy", "run", "--service", "reviews",
            "--service-port", "9080", "--app-port", str(free_port()), *extra]


def ports(**given: int) -> list[str]:
    """--inbound-port/--outbound-port/--admin-port: the given ones, free ports for the rest."""
    argv: list[str] = []
    for name in ("inbound", "outbound", "admin"):
        argv += [f"--{name}-port", str(given.get(name, free_port()))]
    return argv


def assert_one_error_line(result: subprocess.CompletedProcess[str], line: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {line}"], result.stderr
    assert result.returncode == 2


CASES: dict[str, Callable[[int], tuple[list[str], str]]] = {
    "outbound": lambda p: (proxy_run(*ports(outbound=p)), f"--outbound-port {p}: address already in use"),
    "inbound": lambda p: (proxy_run(*ports(inbound=p)), f"--inbound-port {p}: address already in use"),
    "admin": lambda p: (proxy_run(*ports(admin=p)), f"--admin-port {p}: address already in use"),
    "tcp": lambda p: (proxy_run(*ports(), "--tcp", f"db:5432={p}"), f"--tcp db:5432={p}: address already in use"),
    "app-tcp": lambda p: (proxy_run(*ports(), "--app-tcp", f"5432=5433@{p}"),
                          f"--app-tcp 5432=5433@{p}: address already in use"),
    "dns": lambda p: (proxy_run(*ports(), "--dns-port", str(p)), f"--dns-port {p}: address already in use"),
}


@pytest.mark.parametrize("which", CASES)
def test_proxy_run_on_a_taken_port_names_the_flag_and_exits_2(which: str) -> None:
    with held_port() as port:
        argv, line = CASES[which](port)
        assert_one_error_line(run(argv), line)


def test_proxy_run_on_a_dns_port_taken_over_udp_names_the_flag() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:  # a resolver already answers there
        holder.bind(("127.0.0.1", free_port()))
        port = holder.getsockname()[1]
        assert_one_error_line(run(proxy_run(*ports(), "--dns-port", str(port))),
                              f"--dns-port {port}: address already in use")


def test_proxy_run_on_an_inbound_port_taken_on_every_address_names_the_flag() -> None:
    with held_port("0.0.0.0") as port:
        assert_one_error_line(run(proxy_run(*ports(inbound=port))), f"--inbound-port {port}: address already in use")


def test_proxy_run_with_an_access_log_it_cannot_open_names_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "access.log"
    assert_one_error_line(run(proxy_run(*ports(), "--access-log", str(path))),
                          f"--access-log {path}: no such file or directory")


def test_proxy_run_frees_the_ports_it_bound_before_the_one_it_could_not(tmp_path: Path) -> None:
    outbound = free_port()
    with held_port() as admin:  # bound last: outbound and inbound were bound and must be let go
        assert run(proxy_run(*ports(outbound=outbound, admin=admin))).returncode == 2
    with socket.socket() as again:
        again.bind(("127.0.0.1", outbound))  # would raise if the failed sidecar still held it


def up(tmp_path: Path, nats: int, etcd: int) -> list[str]:
    return [sys.executable, "-m", "isthmus.cli", "up", "--state-dir", str(tmp_path / "state"),
            "--nats-port", str(nats), "--etcd-port", str(etcd), "--dashboard-port", str(free_port())]  # not 20001


def test_up_on_a_taken_nats_port_names_the_flag_and_exits_2(tmp_path: Path) -> None:
    with held_port() as port:
        assert_one_error_line(run(up(tmp_path, port, free_port_pair())), f"--nats-port {port}: address already in use")


def test_up_on_a_taken_etcd_port_names_the_flag_and_exits_2(tmp_path: Path) -> None:
    with held_port() as port:
        assert_one_error_line(run(up(tmp_path, free_port(), port)), f"--etcd-port {port}: address already in use")


def test_up_on_a_taken_etcd_peer_port_names_etcd_port_and_exits_2(tmp_path: Path) -> None:
    client = free_port_pair()  # the client port free, its successor held: not a port another process may hold
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", client + 1))
        holder.listen()
        peer = client + 1
        assert_one_error_line(run(up(tmp_path, free_port(), peer - 1)),
                              f"--etcd-port {peer - 1}: etcd's peer port {peer} (--etcd-port + 1): "
                              "address already in use")


def test_the_example_apps_on_a_taken_port_name_the_flag_and_exit_2() -> None:
    with held_port() as port:
        app = run([sys.executable, "-m", "examples.bookinfo.app", "--role", "reviews", "--port", str(port)])
        assert_one_error_line(app, f"--port {port}: address already in use")
        echo = run([sys.executable, "examples/tcp-echo/echo.py", "--port", str(port)])
        assert_one_error_line(echo, f"--port {port}: address already in use")


def test_up_with_a_malformed_port_range_names_the_variable_and_starts_nothing(tmp_path: Path) -> None:
    env = {**project_env(), "ISTHMUS_PORT_RANGE": "x"}
    done = subprocess.run([*up(tmp_path, free_port(), free_port_pair()), "--demo"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "ISTHMUS_PORT_RANGE='x'" in done.stderr and "ready" not in done.stdout, (done.stdout, done.stderr)

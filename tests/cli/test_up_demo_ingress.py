"""`isthmus up --demo` refuses, before it starts anything, an ingress port (the demo's gateway, Gateway ports 80 and
443) that is taken or collides with its other ports, naming the flag; without --demo the flags bind nothing."""

from __future__ import annotations

import socket
from pathlib import Path

from isthmus.launch import free_port, free_port_pair
from isthmus.up import check_ports
from tests.cli.test_cli_options import assert_usage_error, isthmus


def test_a_taken_ingress_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = isthmus("up", "--demo", "--state-dir", str(tmp_path / "state"), "--ingress-port", str(port),
                         "--ingress-https-port", str(free_port()), "--nats-port", str(free_port()),
                         "--etcd-port", str(free_port_pair()),
                         "--dashboard-port", str(free_port()))
    assert result.returncode == 2, result
    assert f"error: --ingress-port {port}: address already in use" in result.stderr, result.stderr
    assert "ready" not in result.stdout, result.stdout  # nothing was started
    assert not (tmp_path / "state" / "etcd").exists()


def test_the_ingress_port_is_checked_only_with_the_demo_and_against_the_other_ports() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        nats, etcd, dashboard = free_port(), free_port_pair(), free_port()
        assert check_ports(nats, etcd, dashboard) is None  # `isthmus up` alone starts no gateway
        https = free_port()
        assert (check_ports(nats, etcd, dashboard, (port, https)) or "").startswith(
            f"--ingress-port {port}: address already")
        assert (check_ports(nats, etcd, dashboard, (https, port)) or "").startswith(
            f"--ingress-https-port {port}: address already")
    assert "collides" in (check_ports(nats, etcd, dashboard, (dashboard, https)) or "")
    assert "--ingress-https-port" in (check_ports(nats, etcd, dashboard, (https, etcd + 1)) or "")
    assert "the same as --ingress-port" in (check_ports(nats, etcd, dashboard, (https, https)) or "")
    assert check_ports(nats, etcd, dashboard, (free_port(), free_port())) is None
    assert_usage_error(isthmus("up", "--ingress-port", "0"), "--ingress-port")
    assert_usage_error(isthmus("up", "--ingress-port", "65536"), "--ingress-port")
    assert_usage_error(isthmus("up", "--ingress-https-port", "0"), "--ingress-https-port")

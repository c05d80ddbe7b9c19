"""`isthmus cluster init|nats|etcd|etcd-auth` (isthmus/commands/cluster.py) without running the servers:
what init writes and with which modes, the configs and command lines nats/etcd would exec (--dry-run), the
clear errors before init. The servers themselves run in tests/integration/test_cluster_faults.py."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from isthmus.cli import cli
from runtime.clientconfig import load

NATS = "nats://n1:4222,nats://n2:4222,nats://n3:4222"
ETCD = "http://e1:2379,http://e2:2379,http://e3:2379"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_every_service_config_naming_every_node_and_keeps_etcds_passwords(tmp_path: Path) -> None:
    root = tmp_path / "c"
    code, out = run("cluster", "init", "--dir", str(root), "--nats", NATS, "--etcd", ETCD)
    assert code == 0, out
    assert mode(root) == 0o700
    for name in ("auth", "registry", "pilot", "ca", "telemetry"):
        config = load(root / "secrets" / f"{name}.yaml")
        assert config.nats.url == NATS and config.etcd is not None and config.etcd.url == ETCD
        assert mode(root / "secrets" / f"{name}.yaml") == 0o600
    operator = load(root / "isthmus.yaml")
    assert operator.nats.url == NATS and operator.nats.user == "operator" and operator.etcd is None
    for secret in ("nats/auth.conf", "nats/route-password", "ca-kek", "secrets/etcd.json"):
        assert mode(root / secret) == 0o600, secret
    etcd = json.loads((root / "secrets" / "etcd.json").read_text())
    kek, route = (root / "ca-kek").read_text(), (root / "nats" / "route-password").read_text()
    assert run("cluster", "init", "--dir", str(root), "--nats", NATS, "--etcd", ETCD)[0] == 0
    assert json.loads((root / "secrets" / "etcd.json").read_text()) == etcd  # etcd keeps its users
    assert (root / "ca-kek").read_text() == kek and (root / "nats" / "route-password").read_text() == route


def test_nats_writes_the_nodes_config_with_the_bus_auth_and_authenticated_routes(tmp_path: Path) -> None:
    root = tmp_path / "c"
    run("cluster", "init", "--dir", str(root), "--nats", NATS, "--etcd", ETCD)
    code, out = run("cluster", "nats", "--dir", str(root), "--name", "nats-1", "--route", "n1:6222",
                    "--route", "n2:6222", "--dry-run")
    assert code == 0, out
    conf = root / "nats" / "nats-1.conf"
    assert out.split()[-2:] == ["-c", str(conf)] and out.split()[0].endswith("nats-server")
    text = conf.read_text()
    password = (root / "nats" / "route-password").read_text().strip()
    assert (root / "nats" / "auth.conf").read_text() in text  # the users, permissions and callout of `isthmus up`
    assert 'listen: "0.0.0.0:4222"' in text and 'server_name: "nats-1"' in text
    assert f"nats-route://route:{password}@n2:6222" in text and 'user: "route"' in text
    assert mode(conf) == 0o600


def test_etcd_execs_a_member_of_the_initial_cluster_with_the_shared_jwt_key(tmp_path: Path) -> None:
    root = tmp_path / "c"
    run("cluster", "init", "--dir", str(root), "--nats", NATS, "--etcd", ETCD)
    code, out = run("cluster", "etcd", "--dir", str(root), "--name", "etcd-1", "--data-dir", str(tmp_path / "d"),
                    "--client-url", "http://e1:2379", "--peer-url", "http://e1:2380",
                    "--listen-client-url", "http://0.0.0.0:2379", "--initial-cluster",
                    "etcd-1=http://e1:2380,etcd-2=http://e2:2380", "--dry-run")
    assert code == 0, out
    argv = out.split()
    assert argv[argv.index("--name") + 1] == "etcd-1"
    assert argv[argv.index("--listen-client-urls") + 1] == "http://0.0.0.0:2379"
    assert argv[argv.index("--advertise-client-urls") + 1] == "http://e1:2379"
    assert argv[argv.index("--listen-peer-urls") + 1] == "http://e1:2380"
    assert argv[argv.index("--initial-cluster") + 1] == "etcd-1=http://e1:2380,etcd-2=http://e2:2380"
    assert f"pub-key={root / 'secrets' / 'etcd-jwt.pub'}" in argv[argv.index("--auth-token") + 1]
    assert mode(tmp_path / "d") == 0o700


def test_every_command_but_init_says_to_run_init_first(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["nats", "--name", "n", "--route", "a:1"],
                 ["etcd", "--name", "e", "--data-dir", str(tmp_path / "d"), "--client-url", "http://a:1",
                  "--peer-url", "http://a:2", "--initial-cluster", "e=http://a:2"],
                 ["etcd-auth", "--etcd", "http://127.0.0.1:1"]):
        code, out = run("cluster", args[0], "--dir", str(empty), *args[1:])
        assert code == 1 and "isthmus cluster init" in out, (args, out)


def test_init_refuses_a_bad_url_as_a_usage_error(tmp_path: Path) -> None:
    code, out = run("cluster", "init", "--dir", str(tmp_path / "c"), "--nats", NATS, "--etcd", "http://e1:99999")
    assert code == 2 and "--etcd" in out and not (tmp_path / "c").exists()
    code, out = run("cluster", "init", "--dir", str(tmp_path / "c"), "--nats", "http://n1", "--etcd", ETCD)
    assert code == 2 and "--nats" in out

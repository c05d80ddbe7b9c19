"""`isthmus up`'s identity flags and the token/ca commands' flags are checked before anything starts: one
`error:` line naming the flag, exit 2 (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.launch import free_port, free_port_pair
from tests.ca import pki
from tests.cli.test_cli_options import UNREACHABLE, assert_usage_error, isthmus


def plugin_files(tmp_path: Path, *, ca: bool = True, signed_by_root: bool = True) -> dict[str, Path]:
    root_key, ca_key, other_key = pki.key(), pki.key(), pki.key()
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    root = pki.ca_cert("root", root_key, root_key.public_key(), now=now)
    signer = root_key if signed_by_root else other_key
    inter = pki.ca_cert("intermediate", signer, ca_key.public_key(), issuer=root.subject, now=now, ca=ca)
    files = {"cert": pki.pem(inter), "key": pki.pem(ca_key), "root": pki.pem(root), "other-key": pki.pem(other_key)}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths


def up(tmp_path: Path, *args: str) -> list[str]:
    return ["up", "--state-dir", str(tmp_path / "state"), "--nats-port", str(free_port()), "--etcd-port",
            str(free_port_pair()), "--dashboard-port", str(free_port()), *args]  # none of the fixed defaults


def test_a_plugin_ca_needs_all_three_files(tmp_path: Path) -> None:
    files = plugin_files(tmp_path)
    result = isthmus(*up(tmp_path, "--plugin-ca-cert", str(files["cert"]), "--plugin-root-cert", str(files["root"])))
    assert_usage_error(result, "--plugin-ca-key", "needs --plugin-ca-key")


@pytest.mark.parametrize("fault,flag,words", [
    ("unreadable", "--plugin-ca-key", "cannot read"),
    ("unreadable cert", "--plugin-ca-cert", "cannot read"),
    ("not PEM", "--plugin-root-cert", "holds no PEM certificate"),
    ("wrong key", "--plugin-ca-key", "does not match"),
    ("not a CA", "--plugin-ca-cert", "is not a CA certificate"),
    ("other root", "--plugin-ca-cert", "does not chain to --plugin-root-cert"),
])
def test_bad_plugin_ca_files_are_refused_at_up(tmp_path: Path, fault: str, flag: str, words: str) -> None:
    files = plugin_files(tmp_path, ca=fault != "not a CA", signed_by_root=fault != "other root")
    key = {"unreadable": tmp_path / "absent.pem", "wrong key": files["other-key"]}.get(fault, files["key"])
    cert = tmp_path / "absent-cert.pem" if fault == "unreadable cert" else files["cert"]
    root = files["key"] if fault == "not PEM" else files["root"]
    result = isthmus(*up(tmp_path, "--plugin-ca-cert", str(cert), "--plugin-ca-key", str(key),
                         "--plugin-root-cert", str(root)))
    assert_usage_error(result, flag, words)
    assert not (tmp_path / "state" / "up.lock").exists()  # refused before anything started


@pytest.mark.parametrize("value", ["59s", "91d", "1x", "nan"])
def test_the_workload_cert_ttl_is_60s_to_90d(tmp_path: Path, value: str) -> None:
    assert_usage_error(isthmus(*up(tmp_path, "--workload-cert-ttl", value)), "--workload-cert-ttl")


@pytest.mark.parametrize("value", ["Cluster.Local", "a/b", ""])
def test_the_trust_domain_is_a_spiffe_trust_domain(tmp_path: Path, value: str) -> None:
    assert_usage_error(isthmus(*up(tmp_path, "--trust-domain", value)), "--trust-domain")


@pytest.mark.parametrize("args,flag", [
    (["--ttl", "59s"], "--ttl"), (["--ttl", "31d"], "--ttl"), (["--uses", "0"], "--uses"),
    (["--uses", "10001"], "--uses"),
])
def test_token_create_bounds(args: list[str], flag: str) -> None:
    result = isthmus("--nats", UNREACHABLE, "token", "create", "-n", "a", "--service-account", "b", *args)
    assert_usage_error(result, flag)


def test_token_create_at_its_bounds_reaches_for_the_ca() -> None:
    for args in (["--ttl", "60s", "--uses", "1"], ["--ttl", "30d", "--uses", "10000"]):
        result = isthmus("--nats", UNREACHABLE, "token", "create", "-n", "a", "--service-account", "b", *args)
        assert result.returncode == 1 and "cannot reach the ca" in result.stderr, result.stderr


def test_token_create_refuses_a_bad_namespace() -> None:
    result = isthmus("--nats", UNREACHABLE, "token", "create", "-n", "A_B", "--service-account", "b")
    assert_usage_error(result, "--namespace")


def test_ca_kek_and_ca_kek_file_together_are_refused(tmp_path: Path) -> None:
    result = isthmus(*up(tmp_path, "--ca-kek", "--ca-kek-file", str(tmp_path / "kek")))
    assert_usage_error(result, "--ca-kek-file", "not both")
    assert not (tmp_path / "state").exists()  # nothing made


@pytest.mark.parametrize("fault,words", [
    ("absent", "cannot read it"),
    ("loose", "mode 0644 lets others read it: chmod 600"),
    ("short", "give 64 hex digits"),
])
def test_a_bad_ca_kek_file_is_refused_at_up(tmp_path: Path, fault: str, words: str) -> None:
    path = tmp_path / "kek"
    if fault != "absent":
        path.write_text("ab" * (31 if fault == "short" else 32))
        path.chmod(0o644 if fault == "loose" else 0o600)
    assert_usage_error(isthmus(*up(tmp_path, "--ca-kek-file", str(path))), "--ca-kek-file", words)
    assert not (tmp_path / "state" / "up.lock").exists()  # refused before anything started


def test_ca_kek_makes_a_kek_in_the_state_directory_once_and_keeps_it(tmp_path: Path) -> None:
    import os
    import socket
    import stat

    with socket.socket() as busy:  # `up` stops at its port check, after the KEK was made
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        first = isthmus(*up(tmp_path, "--ca-kek", "--nats-port", port))
        kek = tmp_path / "state" / "ca" / "kek"
        assert first.returncode == 2 and f"made a KEK for the ca at {kek}" in first.stderr, first.stderr
        made = kek.read_bytes()
        assert stat.S_IMODE(os.stat(kek).st_mode) == 0o600 and len(made.strip()) == 64
        again = isthmus(*up(tmp_path, "--ca-kek", "--nats-port", port))
        assert again.returncode == 2 and "made a KEK" not in again.stderr
        assert kek.read_bytes() == made
    kek.chmod(0o640)  # the made file is checked as a given one is
    assert_usage_error(isthmus(*up(tmp_path, "--ca-kek")), "--ca-kek", "chmod 600")


def test_a_previous_kek_needs_the_new_one_and_is_checked_as_it_is(tmp_path: Path) -> None:
    from runtime.kek import make_kek

    make_kek(tmp_path / "new")
    make_kek(tmp_path / "old")
    assert_usage_error(isthmus(*up(tmp_path, "--ca-previous-kek-file", str(tmp_path / "old"))),
                       "--ca-previous-kek-file", "needs the new KEK")
    (tmp_path / "old").chmod(0o604)
    assert_usage_error(isthmus(*up(tmp_path, "--ca-kek-file", str(tmp_path / "new"), "--ca-previous-kek-file",
                                   str(tmp_path / "old"))), "--ca-previous-kek-file", "chmod 600")


@pytest.mark.parametrize("value", ["0", "10001"])
def test_credentials_list_limit_over_its_bounds_is_a_usage_error(value: str) -> None:
    result = isthmus("--nats", UNREACHABLE, "proxy", "credentials", "list", "--limit", value)
    assert_usage_error(result, "--limit")


def test_credentials_list_limit_at_its_bounds_reaches_for_the_auth_service() -> None:
    for value in ("1", "10000"):
        result = isthmus("--nats", UNREACHABLE, "proxy", "credentials", "list", "--limit", value)
        assert result.returncode == 1 and "--limit" not in result.stderr, result.stderr

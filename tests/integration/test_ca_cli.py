"""`isthmus token create|list|revoke` and `isthmus ca bundle|rotate-root` against a running control plane."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from proto.ca import SignReply
from tests.ca import pki
from tests.integration.conftest import ControlPlane
from tests.integration.test_ca_signing import call, openssl_verify

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def ca_cli_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("ca-cli"))
    try:
        cp.start_service("auth")
        cp.start_service("ca")
        yield cp
    finally:
        cp.stop()


def cli(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, *args],
                          capture_output=True, text=True, timeout=60)


async def test_token_create_prints_only_the_token_and_list_and_revoke_manage_it(ca_cli_plane: ControlPlane) -> None:
    made = cli(ca_cli_plane, "token", "create", "-n", "shop", "--service-account", "cart", "--ttl", "2h", "--uses", "2")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}\.[A-Za-z0-9_-]{43}", token) and made.stdout == token + "\n"
    token_id = token.split(".")[0]
    listed = cli(ca_cli_plane, "token", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith(token_id)).split()
    assert row[:4] == [token_id, "shop", "cart", "2/2"] and re.fullmatch(r"11\dm", row[4]) and row[5] == "active", row
    assert listed.stdout.splitlines()[0].split() == ["ID", "NAMESPACE", "SERVICE-ACCOUNT", "USES", "EXPIRES", "STATE"]
    assert token.split(".")[1] not in listed.stdout
    as_json = json.loads(cli(ca_cli_plane, "token", "list", "-o", "json").stdout)
    mine = next(t for t in as_json if t["id"] == token_id)
    assert mine["namespace"] == "shop" and mine["uses"] == 2 and "secret_sha256" not in mine
    assert any(t["id"] == token_id for t in yaml.safe_load(cli(ca_cli_plane, "token", "list", "-o", "yaml").stdout))

    csr_pem, _ = pki.csr()
    assert (await call(ca_cli_plane, "isthmus.ca.sign", {"csr_pem": csr_pem, "token": token}, SignReply)).ok
    revoked = cli(ca_cli_plane, "token", "revoke", token_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    row = next(line for line in cli(ca_cli_plane, "token", "list").stdout.splitlines() if line.startswith(token_id))
    assert row.split()[3] == "1/2" and row.split()[5] == "revoked", row
    refused = await call(ca_cli_plane, "isthmus.ca.sign", {"csr_pem": csr_pem, "token": token}, SignReply)
    assert not refused.ok and "revoked" in refused.error
    unknown = cli(ca_cli_plane, "token", "revoke", "0123456789abcdef")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no token")


async def test_ca_bundle_prints_the_roots_openssl_verifies_against_and_rotate_root_adds_one(
        ca_cli_plane: ControlPlane, tmp_path: Path) -> None:
    bundle = cli(ca_cli_plane, "ca", "bundle")
    assert bundle.returncode == 0 and bundle.stdout.count("-----BEGIN CERTIFICATE-----") == 1
    token = cli(ca_cli_plane, "token", "create", "-n", "x", "--service-account", "y").stdout.strip()
    csr_pem, _ = pki.csr()
    reply = await call(ca_cli_plane, "isthmus.ca.sign", {"csr_pem": csr_pem, "token": token}, SignReply)
    assert reply.ok
    if shutil.which("openssl"):
        verified = openssl_verify(tmp_path, [bundle.stdout], reply.cert_chain_pem)
        assert verified.returncode == 0, verified.stderr
    before = json.loads(cli(ca_cli_plane, "ca", "bundle", "-o", "json").stdout)
    rotated = cli(ca_cli_plane, "ca", "rotate-root")
    assert rotated.returncode == 0 and "trusts 2 roots" in rotated.stdout, rotated.stderr
    after = yaml.safe_load(cli(ca_cli_plane, "ca", "bundle", "-o", "yaml").stdout)
    assert after["version"] == before["version"] + 1 and after["roots_pem"][0] == before["roots_pem"][0]
    assert cli(ca_cli_plane, "ca", "bundle").stdout.count("-----BEGIN CERTIFICATE-----") == 2


async def test_the_commands_say_the_ca_is_not_running(ca_cli_plane: ControlPlane) -> None:
    ca_cli_plane.services["ca"].stop()  # as while `isthmus up` restarts it: the bus is up, the ca is not
    try:
        for args in (["token", "list"], ["ca", "bundle"], ["ca", "rotate-root"]):
            result = cli(ca_cli_plane, *args)
            assert result.returncode == 1, result.stderr
            assert "the ca did not answer" in result.stderr and "the ca is restarting or was not started" in \
                result.stderr and "is `isthmus up` running" not in result.stderr, result.stderr
    finally:
        await ca_cli_plane.start_service_async("ca")

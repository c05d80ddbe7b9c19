"""The ca's secret store for gateways' credentialName, with the real nats-server, etcd and ca: the CLI creates,
lists and deletes; etcd and the logs never hold a key in clear; a proxy fetches only its own namespace's; a
SecretClient follows a rotation and a deletion without restarting."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from proto.secrets import SecretFetchReply, SecretFetchRequest
from proto.subjects import CA_SECRET_FETCH, identity_subject
from proxy.gateway.secret_client import SecretClient
from runtime.bus import BusError
from runtime.secret_seal import raw_public
from services.ca.secret_store import record_key
from tests.ca.tlspki import key_body, server
from tests.integration.conftest import ControlPlane, eventually

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def secrets_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("secrets"))
    try:
        cp.start_service("auth")
        cp.start_service("ca")
        yield cp
    finally:
        cp.stop()


def cli(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, *args],
                          capture_output=True, text=True, timeout=60)


def files(tmp_path: Path, tag: str, **kwargs: object) -> tuple[str, str, str, str]:
    """(cert file, key file, ca file, key PEM) of a new server certificate."""
    chain, key, ca = server(**kwargs)  # type: ignore[arg-type]
    paths = []
    for suffix, text in (("crt", chain), ("key", key), ("ca.crt", ca)):
        path = tmp_path / f"{tag}.{suffix}"
        path.write_text(text)
        paths.append(str(path))
    return paths[0], paths[1], paths[2], key


def openssl_pair(tmp_path: Path, host: str) -> tuple[str, str]:
    """Istio's task makes its certificates with openssl req -x509; so do we (Debian's openssl)."""
    crt, key = tmp_path / f"{host}.crt", tmp_path / f"{host}.key"
    subprocess.run(["openssl", "req", "-x509", "-sha256", "-nodes", "-days", "365", "-newkey", "rsa:2048",
                    "-subj", f"/O=example Inc./CN={host}", "-addext", f"subjectAltName=DNS:{host}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True, timeout=60)
    return str(crt), str(key)


async def test_create_list_and_no_key_in_the_output_in_etcd_or_the_log(secrets_plane: ControlPlane,
                                                                          tmp_path: Path) -> None:
    crt, key = openssl_pair(tmp_path, "httpbin.example.com")
    key_pem = Path(key).read_text()
    made = cli(secrets_plane, "create", "secret", "tls", "httpbin-credential", "-n", "istio-system",
               "--cert", crt, "--key", key)
    assert made.returncode == 0 and made.stdout.strip() == "secret/httpbin-credential created", made.stderr
    table = cli(secrets_plane, "get", "secrets", "-n", "istio-system")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[0].split(), table.stdout.splitlines()[1].split()
    assert header == ["NAME", "TYPE", "HOSTS", "EXPIRES", "AGE"]
    assert row[:3] == ["httpbin-credential", "kubernetes.io/tls", "httpbin.example.com"], row
    as_json = json.loads(cli(secrets_plane, "get", "secrets", "-n", "istio-system", "-o", "json").stdout)
    assert as_json[0]["name"] == "httpbin-credential" and as_json[0]["key_type"] == "RSA 2048"
    one = yaml.safe_load(cli(secrets_plane, "get", "secret", "httpbin-credential", "-n", "istio-system",
                             "-o", "yaml").stdout)
    assert one["hosts"] == ["httpbin.example.com"]
    # times as kubectl prints them (RFC 3339 UTC), not Unix seconds
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", one["not_after"]), one["not_after"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", as_json[0]["created"]), as_json[0]
    everywhere = cli(secrets_plane, "get", "secrets", "-A", "-o", "table")
    assert everywhere.stdout.splitlines()[0].split()[0] == "NAMESPACE" and "istio-system" in everywhere.stdout
    body = key_body(key_pem)
    for output in (table.stdout, everywhere.stdout, json.dumps(as_json), str(one)):
        assert body[:40] not in output and "PRIVATE KEY" not in output
    store = await secrets_plane.store()
    try:
        raw = (await store.get(record_key("istio-system", "httpbin-credential"))).value  # type: ignore[union-attr]
    finally:
        await store.close()
    assert b"BEGIN CERTIFICATE" in raw and body[:40].encode() not in raw and b"PRIVATE KEY" not in raw
    assert body[:40] not in (secrets_plane.state_dir / "logs" / "ca.log").read_text()
    again = cli(secrets_plane, "create", "secret", "tls", "httpbin-credential", "-n", "istio-system",
                "--cert", crt, "--key", key)
    assert again.stdout.strip() == "secret/httpbin-credential replaced"
    missing = cli(secrets_plane, "get", "secret", "nope", "-n", "istio-system")
    assert missing.returncode == 1 and missing.stderr.startswith('error: secret "nope" not found')
    config_kind = cli(secrets_plane, "get", "nosuchkind")  # config kinds still resolve as before
    assert config_kind.returncode == 1 and "unknown resource kind" in config_kind.stderr


async def test_bad_inputs_are_refused_naming_the_flag_and_file(secrets_plane: ControlPlane, tmp_path: Path) -> None:
    crt, key, ca, _ = files(tmp_path, "a")
    _, other_key, _, _ = files(tmp_path, "b")
    base = ("create", "secret", "tls", "bad", "-n", "shop")
    mismatch = cli(secrets_plane, *base, "--cert", crt, "--key", other_key)
    assert mismatch.returncode == 1 and "does not match the certificate" in mismatch.stderr
    assert len(mismatch.stderr.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    refused = cli(secrets_plane, *base, "--cert", str(garbage), "--key", key)
    assert refused.returncode == 1 and "not valid PEM certificates" in refused.stderr, refused.stderr
    big = tmp_path / "big.key"
    big.write_text("-----BEGIN PRIVATE KEY-----\n" + "A" * (16 * 1024))
    oversize = cli(secrets_plane, *base, "--cert", crt, "--key", str(big))
    assert oversize.returncode == 1 and oversize.stderr.startswith(f"error: --key {big}: larger than 16384 bytes")
    at = tmp_path / "at.key"
    at.write_text(Path(key).read_text().ljust(16 * 1024 - 1) + "\n")  # at the limit: read, and the ca takes it
    assert cli(secrets_plane, *base, "--cert", crt, "--key", str(at)).returncode == 0
    absent = cli(secrets_plane, *base, "--cert", str(tmp_path / "none.crt"), "--key", key)
    assert absent.returncode == 1 and absent.stderr.startswith(f"error: --cert {tmp_path / 'none.crt'}: cannot read")
    badname = cli(secrets_plane, "create", "secret", "tls", "Bad_Name", "-n", "shop", "--cert", crt, "--key", key)
    assert badname.returncode == 2 and "DNS-1123 subdomain" in badname.stderr
    badns = cli(secrets_plane, "create", "secret", "tls", "ok", "-n", "a.b", "--cert", crt, "--key", key)
    assert badns.returncode == 2 and "DNS-1123 label" in badns.stderr
    wrongkey = cli(secrets_plane, "create", "secret", "generic", "x-cacert", "-n", "shop", f"--from-file=tls.crt={ca}")
    assert wrongkey.returncode == 2 and "ca.crt=FILE" in wrongkey.stderr
    expired_crt, expired_key, _, _ = files(tmp_path, "old", days=1, start_days=-10)
    expired = cli(secrets_plane, *base, "--cert", expired_crt, "--key", expired_key)
    assert expired.returncode == 0 and "Warning: the certificate expired" in expired.stderr


async def test_a_proxy_fetches_only_its_own_namespace(secrets_plane: ControlPlane, tmp_path: Path) -> None:
    crt, key, _, _ = files(tmp_path, "b")
    assert cli(secrets_plane, "create", "secret", "tls", "cred", "-n", "team-b", "--cert", crt, "--key", key).returncode == 0
    bus = await secrets_plane.bus("test-proxy-a", role="proxy:team-a")
    try:
        private = X25519PrivateKey.generate()
        request = SecretFetchRequest(names=["cred", "../team-b/cred", "team-b/cred"], reply_key=raw_public(private))
        with pytest.raises(BusError):  # nats-server: Permissions Violation, no reply ever comes
            await bus.call(identity_subject(CA_SECRET_FETCH, "team-b", "default"), request, SecretFetchReply, 1.0)
        own = await bus.call(identity_subject(CA_SECRET_FETCH, "team-a", "default"), request, SecretFetchReply, 5.0)
        assert own.ok and own.secrets == [] and sorted(own.missing) == sorted(request.names)
    finally:
        await bus.close()


async def test_a_secret_client_follows_rotation_deletion_and_the_cacert_companion(secrets_plane: ControlPlane,
                                                                                  tmp_path: Path) -> None:
    crt, key, ca, key_pem = files(tmp_path, "one", hosts=("bookinfo.example.com",))
    base = ("-n", "gw")
    assert cli(secrets_plane, "create", "secret", "tls", "bookinfo", *base, "--cert", crt, "--key", key).returncode == 0
    bus = await secrets_plane.bus("test-proxy-gw", role="proxy:gw")
    client = SecretClient("gw", "default", fetch_timeout=3.0)
    changed = asyncio.Event()
    client.listeners.append(changed.set)
    client.want({"bookinfo"})
    task = asyncio.create_task(client.run(bus))
    try:
        await eventually(lambda: "bookinfo" in client.current, 10)
        first = client.current["bookinfo"]
        assert first.key_pem == key_pem and first.ca_cert_pem == ""
        crt2, key2, _, key_pem2 = files(tmp_path, "two", hosts=("bookinfo.example.com",))
        rotated = cli(secrets_plane, "create", "secret", "tls", "bookinfo", *base, "--cert", crt2, "--key", key2)
        assert rotated.stdout.strip() == "secret/bookinfo replaced"
        await eventually(lambda: client.current["bookinfo"].key_pem == key_pem2, 5)
        assert client.current["bookinfo"].version > first.version
        companion = cli(secrets_plane, "create", "secret", "generic", "bookinfo-cacert", *base,
                        f"--from-file=ca.crt={ca}")
        assert companion.returncode == 0, companion.stderr
        await eventually(lambda: client.current["bookinfo"].ca_cert_pem == Path(ca).read_text(), 5)
        assert "Opaque" in cli(secrets_plane, "get", "secrets", *base).stdout
        deleted = cli(secrets_plane, "delete", "secret", "bookinfo", *base)
        assert deleted.returncode == 0 and deleted.stdout.strip() == 'secret "bookinfo" deleted'
        await eventually(lambda: client.missing == {"bookinfo"} and not client.current, 5)
        again = cli(secrets_plane, "delete", "secret", "bookinfo", *base)
        assert again.returncode == 1 and "not found" in again.stderr
        assert cli(secrets_plane, "delete", "secret", "bookinfo", *base, "--ignore-not-found").returncode == 0
        assert "BEGIN" not in json.dumps(client.dump())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()


async def test_with_a_kek_keys_are_sealed_with_it_and_the_count_is_bounded(tmp_path_factory: pytest.TempPathFactory,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from proto.secrets import SecretRecord
    from runtime import kek as keks
    from runtime.bus import decode

    kek_file = tmp_path / "kek"
    keks.make_kek(kek_file)
    monkeypatch.setenv("ISTHMUS_CA_KEK_FILE", str(kek_file))
    monkeypatch.setenv("ISTHMUS_CA_MAX_SECRETS", "2")
    plane = await asyncio.to_thread(ControlPlane, tmp_path_factory.mktemp("secrets-kek"))  # it runs its own loop
    try:
        await plane.start_service_async("auth")
        await plane.start_service_async("ca")
        crt, key, _, key_pem = files(tmp_path, "k")
        for name in ("one", "two"):  # at the limit: stored
            made = cli(plane, "create", "secret", "tls", name, "-n", "gw", "--cert", crt, "--key", key)
            assert made.returncode == 0, made.stderr
        over = cli(plane, "create", "secret", "tls", "three", "-n", "gw", "--cert", crt, "--key", key)
        assert over.returncode == 1 and "2 secrets exist (ISTHMUS_CA_MAX_SECRETS)" in over.stderr
        assert cli(plane, "create", "secret", "tls", "two", "-n", "gw", "--cert", crt, "--key", key).returncode == 0
        store = await plane.store()
        try:
            raw = (await store.get(record_key("gw", "one"))).value  # type: ignore[union-attr]
        finally:
            await store.close()
        assert decode(raw, SecretRecord).kek_id == keks.kek_id(keks.load_kek(kek_file))
        assert not (plane.state_dir / "ca" / "secrets.kek").exists()  # the KEK seals: no local key made
        bus = await plane.bus("test-proxy-kek", role="proxy:gw")
        client = SecretClient("gw", "default")
        client.want({"one"})
        task = asyncio.create_task(client.run(bus))
        try:
            await eventually(lambda: "one" in client.current, 10)
            assert client.current["one"].key_pem == key_pem
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()
    finally:
        await asyncio.to_thread(plane.stop)

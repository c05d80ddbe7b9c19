"""The ca's authority against the real nats-server and etcd: replicas sharing one state directory make one
root; keys stay on disk (never in etcd); the legacy root key is deleted; root rotation publishes a
two-root bundle and old certificates still verify; a plug-in CA signs as an intermediate and refuses
rotation."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from isthmus.launch import ManagedProcess, service_process
from proto.ca import RotateRootReply, SignReply, TokenCreateReply, TokenCreateRequest, TrustBundle
from runtime import bus as busmod
from tests.ca import pki
from tests.integration.conftest import ControlPlane
from tests.integration.test_ca_signing import call, make_token, openssl_verify, sign

pytestmark = pytest.mark.asyncio


@pytest.fixture
def bare_plane(tmp_path: Path):  # type: ignore[no-untyped-def]
    cp = ControlPlane(tmp_path)
    try:
        cp.start_service("auth")  # proxies' bus credentials (a proxy signs); the tests start the ca replicas
        yield cp
    finally:
        cp.stop()


async def start_ca(plane: ControlPlane, name: str, env: dict[str, str] | None = None) -> ManagedProcess:
    """One more ca replica on the plane's state directory (its own log file)."""
    made = service_process("ca", plane.nats_url, plane.etcd_url, plane.state_dir, credentials=plane.creds)
    proc = ManagedProcess(name, made.argv, log_path=plane.state_dir / "logs" / f"{name}.log",
                          env={**made.env, **(env or {})})  # the ca's bus and etcd credentials, its own log
    plane.services[name] = proc.start()
    return proc


async def ready(plane: ControlPlane, proc: ManagedProcess) -> None:
    from isthmus.launch import wait_ready

    bus = await plane.bus("test-wait")
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while proc.is_running and asyncio.get_running_loop().time() < deadline:
            if "\"ready\"" in proc.log_path.read_text(errors="replace"):
                return
            await asyncio.sleep(0.1)
        await wait_ready(bus, "ca", 1, process=proc)
    finally:
        await bus.close()


async def test_replicas_on_one_state_directory_make_one_root_kept_on_disk_only(bare_plane: ControlPlane) -> None:
    store = await bare_plane.store()
    try:
        await store.put("/isthmus/ca/root", b'{"cert_pem": "x", "key_pem": "-----BEGIN PRIVATE KEY-----"}')
    finally:
        await store.close()  # no gRPC threads while forking children (grpc's fork handlers would be skipped)
    procs = [await start_ca(bare_plane, f"ca-{i}") for i in range(3)]  # started together: they race
    for proc in procs:
        await ready(bare_plane, proc)
    store = await bare_plane.store()
    try:
        assert await store.get("/isthmus/ca/root") is None  # the legacy clear-text key is gone
        entries, _ = await store.list("/isthmus/")  # all the services' user may read: all the services write
        assert entries and not any(b"PRIVATE KEY" in e.value for e in entries)
    finally:
        await store.close()
    ca_dir = bare_plane.state_dir / "ca"
    keys = sorted(ca_dir.glob("*.key.pem"))
    assert len(keys) == 1, keys
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keys[0]).st_mode) == 0o600
    assert not list(ca_dir.glob(".*.tmp"))
    logs = "".join((bare_plane.state_dir / "logs" / f"ca-{i}.log").read_text() for i in range(3))
    assert logs.count("deleted the legacy root key") == 1
    bundles = [await call(bare_plane, "isthmus.ca.bundle", {}, TrustBundle) for _ in range(6)]  # queue group
    assert len({(b.version, tuple(b.roots_pem)) for b in bundles}) == 1 and len(bundles[0].roots_pem) == 1
    fp = keys[0].name.removesuffix(".key.pem")
    root = x509.load_pem_x509_certificate(bundles[0].roots_pem[0].encode())
    from services.ca.material import fingerprint
    assert fingerprint(root) == fp


async def test_rotation_publishes_two_roots_new_certs_chain_to_the_new_one_and_old_ones_still_verify(
        bare_plane: ControlPlane, tmp_path: Path) -> None:
    await ready(bare_plane, await start_ca(bare_plane, "ca-a"))
    await ready(bare_plane, await start_ca(bare_plane, "ca-b"))
    before = await call(bare_plane, "isthmus.ca.bundle", {}, TrustBundle)
    old_csr, old_key = pki.csr()
    old = await sign(bare_plane, csr_pem=old_csr, token=await make_token(bare_plane, "rot"), ttl_seconds=300)
    assert old.ok

    bus = await bare_plane.bus("test-rotate")  # the operator: rotates, and reads bundle updates
    updates: asyncio.Queue[TrustBundle] = asyncio.Queue()

    async def on_update(msg) -> None:  # type: ignore[no-untyped-def]
        await updates.put(busmod.decode(msg.data, TrustBundle))

    await bus.client.subscribe("isthmus.ca.bundle.updates", cb=on_update)
    await bus.flush()
    try:
        reply = await bus.call("isthmus.ca.rotate", {}, RotateRootReply, timeout=10)
        assert reply.ok and reply.bundle is not None
        published = await asyncio.wait_for(updates.get(), 10)
    finally:
        await bus.close()
    assert published.version == before.version + 1 == reply.bundle.version
    assert len(published.roots_pem) == 2 and published.roots_pem[0] == before.roots_pem[0]
    assert reply.old_retires_at >= old.not_after  # the old root stays until its last certificate expired
    for _ in range(4):  # every replica signs with the new root (the other one followed etcd)
        new_csr, _ = pki.csr()
        new = await sign(bare_plane, csr_pem=new_csr, token=await make_token(bare_plane, "rot"))
        assert new.ok and new.roots_pem == published.roots_pem
        new_leaf = x509.load_pem_x509_certificate(new.cert_chain_pem[0].encode())
        new_root = x509.load_pem_x509_certificate(published.roots_pem[1].encode())
        new_leaf.verify_directly_issued_by(new_root)
    renew_csr, _ = pki.csr()
    renewed = await sign(bare_plane, csr_pem=renew_csr, proof_chain_pem=old.cert_chain_pem,
                         proof_signature=pki.proof_signature(old_key, renew_csr))  # old-root proof still counts
    assert renewed.ok, renewed.error
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    for chain in (old.cert_chain_pem, new.cert_chain_pem):
        verified = openssl_verify(tmp_path, published.roots_pem, chain)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    only_new = openssl_verify(tmp_path, published.roots_pem[1:], old.cert_chain_pem)
    assert only_new.returncode != 0  # the test can fail: without the old root the old chain does not verify


async def test_a_refused_rotation_leaves_no_root_key_behind(bare_plane: ControlPlane) -> None:
    """Each rotate-root made and saved a root key before the bundle refused a fourth root (found by an attack:
    four concurrent rotations left five keys for three roots, and each further refused one added a key that
    no bundle trusts). Concurrent rotations: at most three roots; exactly the trusted roots' keys on disk."""
    await ready(bare_plane, await start_ca(bare_plane, "ca-a"))
    await call(bare_plane, "isthmus.ca.sign", {"csr_pem": pki.csr()[0],  # the first root signed: it stays
                                              "token": await make_token(bare_plane, "keep")}, SignReply)
    bus = await bare_plane.bus("test-rotate")
    try:
        replies = await asyncio.gather(*(bus.call("isthmus.ca.rotate", {}, RotateRootReply, timeout=20)
                                         for _ in range(6)))
        replies.append(await bus.call("isthmus.ca.rotate", {}, RotateRootReply, timeout=20))
    finally:
        await bus.close()
    made = sum(r.ok for r in replies)
    assert made >= 1 and any(not r.ok and "already trusted" in r.error for r in replies), replies
    bundle = await call(bare_plane, "isthmus.ca.bundle", {}, TrustBundle)
    assert len(bundle.roots_pem) <= 3
    keys = list((bare_plane.state_dir / "ca").glob("*.key.pem"))
    assert len(keys) == 1 + made, (keys, replies)  # the first root and one per rotation made; none refused
    assert not list((bare_plane.state_dir / "ca").glob("*.cert.pem"))[1 + made:]


async def test_a_plugin_ca_signs_as_an_intermediate_and_refuses_rotation(bare_plane: ControlPlane,
                                                                        tmp_path: Path) -> None:
    root_key, ca_key = pki.key(), pki.key()
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    root = pki.ca_cert("operator root", root_key, root_key.public_key(), now=now)
    inter = pki.ca_cert("operator intermediate", root_key, ca_key.public_key(), issuer=root.subject, now=now)
    files = {"ca-cert.pem": pki.pem(inter), "ca-key.pem": pki.pem(ca_key), "root-cert.pem": pki.pem(root),
             "cert-chain.pem": pki.pem(inter) + pki.pem(root)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    env = {"ISTHMUS_PLUGIN_CA_CERT": str(tmp_path / "ca-cert.pem"), "ISTHMUS_PLUGIN_CA_KEY": str(tmp_path / "ca-key.pem"),
           "ISTHMUS_PLUGIN_CA_ROOT_CERT": str(tmp_path / "root-cert.pem"),
           "ISTHMUS_PLUGIN_CA_CERT_CHAIN": str(tmp_path / "cert-chain.pem")}
    await ready(bare_plane, await start_ca(bare_plane, "ca-plugin", env))
    bundle = await call(bare_plane, "isthmus.ca.bundle", {}, TrustBundle)
    assert bundle.roots_pem == [pki.pem(root).decode()]
    csr_pem, _ = pki.csr()
    reply = await sign(bare_plane, csr_pem=csr_pem, token=await make_token(bare_plane, "plug"))
    assert reply.ok and len(reply.cert_chain_pem) == 2 and reply.cert_chain_pem[1] == pki.pem(inter).decode()
    assert not list((bare_plane.state_dir / "ca").glob("*.key.pem"))  # the operator's key is not copied
    rotate = await call(bare_plane, "isthmus.ca.rotate", {}, RotateRootReply)
    assert not rotate.ok and "plug-in CA" in rotate.error
    if shutil.which("openssl"):
        verified = openssl_verify(tmp_path, bundle.roots_pem, reply.cert_chain_pem)
        assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_the_number_of_tokens_is_bounded_at_and_one_over(bare_plane: ControlPlane) -> None:
    await ready(bare_plane, await start_ca(bare_plane, "ca-bounded", {"ISTHMUS_CA_MAX_TOKENS": "2"}))
    for _ in range(2):
        await make_token(bare_plane, "bound")  # at the bound: accepted
    over = await call(bare_plane, "isthmus.ca.token.create",
                      TokenCreateRequest(namespace="bound", service_account="default"), TokenCreateReply)
    assert not over.ok and "2 tokens exist (ISTHMUS_CA_MAX_TOKENS)" in over.error
    bad = await call(bare_plane, "isthmus.ca.token.create",
                     TokenCreateRequest(namespace="Bad_NS", service_account="default"), TokenCreateReply)
    assert not bad.ok and "DNS-1123" in bad.error


async def test_a_ca_without_the_signing_key_or_with_bad_settings_exits_with_one_clear_line(
        bare_plane: ControlPlane) -> None:
    first = await start_ca(bare_plane, "ca-first")
    await ready(bare_plane, first)
    first.stop()
    for key in (bare_plane.state_dir / "ca").glob("*.key.pem"):
        key.unlink()  # as on another machine that lacks the directory
    for name, env, words in (("ca-keyless", {}, "whose key is not in"),
                             ("ca-badttl", {"ISTHMUS_WORKLOAD_CERT_TTL": "5s"}, "ISTHMUS_WORKLOAD_CERT_TTL"),
                             ("ca-badplugin", {"ISTHMUS_PLUGIN_CA_CERT": "/nonexistent", "ISTHMUS_PLUGIN_CA_KEY": "/x",
                                               "ISTHMUS_PLUGIN_CA_ROOT_CERT": "/y"}, "cannot read")):
        proc = await start_ca(bare_plane, name, env)
        for _ in range(300):
            if not proc.is_running:
                break
            await asyncio.sleep(0.1)
        assert proc.returncode == 1, name
        log = proc.log_path.read_text()
        errors = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"error"' in line]
        assert any(e.get("event") == "the ca cannot start" and words in e["error"] for e in errors), log[-2000:]
        assert "Traceback" not in log

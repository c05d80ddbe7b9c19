"""ca replicas on different machines (here: different state directories) serve from one signing key, kept
in etcd sealed with the operator's KEK, against the real nats-server and etcd: both sign into one bundle,
one survives the other, a rotation through one reaches the other; the etcd value is ciphertext only; a
missing or wrong KEK is one clear line and exit 1."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from isthmus.launch import ManagedProcess, service_process
from proto.ca import RotateRootReply, SealedKey, TrustBundle
from runtime import kek as keks
from runtime.bus import decode
from services.ca import sealed
from tests.ca import pki
from tests.integration.conftest import ControlPlane
from tests.integration.test_ca_authority import bare_plane, ready, start_ca  # noqa: F401 (a fixture)
from tests.integration.test_ca_signing import call, make_token, sign

pytestmark = pytest.mark.asyncio


def kek_file(path: Path) -> Path:
    assert keks.make_kek(path)
    return path


def machine(tmp_path: Path, name: str, kek: Path | None) -> dict[str, str]:
    """The environment of a ca on its own machine: its own state directory, and the KEK if given."""
    env = {"ISTHMUS_STATE_DIR": str(tmp_path / name)}
    if kek is not None:
        env["ISTHMUS_CA_KEK_FILE"] = str(kek)
    return env


def signed_by(plane: ControlPlane, name: str) -> int:
    log = (plane.state_dir / "logs" / f"{name}.log").read_text()
    return sum(1 for line in log.splitlines() if '"ca audit"' in line and '"outcome": "signed"' in line)


async def start_ca_with_flags(plane: ControlPlane, name: str, state: Path, kek: Path) -> ManagedProcess:
    """A replica started alone, as an operator would on another machine: `python -m services.ca ...
    --state-dir DIR --ca-kek-file PATH` (no ISTHMUS_STATE_DIR, no ISTHMUS_CA_KEK_FILE)."""
    made = service_process("ca", plane.nats_url, plane.etcd_url, plane.state_dir, credentials=plane.creds)
    env = {k: v for k, v in made.env.items() if k not in ("ISTHMUS_STATE_DIR", "ISTHMUS_CA_KEK_FILE")}
    flagged = ManagedProcess(name, [*made.argv, "--state-dir", str(state), "--ca-kek-file", str(kek)],
                             log_path=plane.state_dir / "logs" / f"{name}.log", env=env)
    plane.services[name] = flagged.start()
    return flagged


async def sign_one(plane: ControlPlane) -> tuple[x509.Certificate, list[str]]:
    csr_pem, _ = pki.csr()
    reply = await sign(plane, csr_pem=csr_pem, token=await make_token(plane, "multi"))
    assert reply.ok, reply.error
    return x509.load_pem_x509_certificate(reply.cert_chain_pem[0].encode()), reply.roots_pem


async def sealed_entries(plane: ControlPlane) -> dict[str, bytes]:
    store = await plane.store()
    try:
        entries, _ = await store.list(sealed.KEYS)
    finally:
        await store.close()  # no gRPC threads while the test forks ca processes
    return {e.key: e.value for e in entries}


async def exits_with(proc: ManagedProcess, words: str) -> None:
    for _ in range(300):
        if not proc.is_running:
            break
        await asyncio.sleep(0.1)
    assert proc.returncode == 1, proc.name
    log = proc.log_path.read_text()
    errors = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"error"' in line]
    assert [e["event"] for e in errors] == ["the ca cannot start"], log[-2000:]
    assert words in errors[0]["error"], errors[0]["error"]
    assert "Traceback" not in log


async def test_two_machines_with_one_kek_sign_into_one_bundle_survive_each_other_and_follow_a_rotation(
        bare_plane: ControlPlane, tmp_path: Path) -> None:
    kek = kek_file(tmp_path / "kek")
    a = await start_ca(bare_plane, "ca-a", machine(tmp_path, "machine-a", kek))
    await ready(bare_plane, a)
    key_files = list((tmp_path / "machine-a" / "ca").glob("*.key.pem"))
    assert len(key_files) == 1
    fp = key_files[0].name.removesuffix(".key.pem")
    raw = (await sealed_entries(bare_plane))[sealed.key_path(fp)]  # the etcd value, as a backup would hold it
    key = serialization.load_pem_private_key(key_files[0].read_bytes(), password=None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for form in (der, base64.b64encode(der), key_files[0].read_bytes(), b"PRIVATE KEY", kek.read_bytes().strip()):
        assert form not in raw
    value = decode(raw, SealedKey)
    assert keks.unseal(keks.load_kek(kek), sealed.key_path(fp), value.kek_id, value.nonce, value.ciphertext) == der
    with pytest.raises(keks.Unsealable):
        keks.unseal(os.urandom(32), sealed.key_path(fp), keks.kek_id(os.urandom(32)), value.nonce, value.ciphertext)

    b = await start_ca_with_flags(bare_plane, "ca-b", tmp_path / "machine-b", kek)  # an empty state directory
    await ready(bare_plane, b)
    assert "loaded the signing key sealed in etcd" in b.log_path.read_text()
    assert not list((tmp_path / "machine-b" / "ca").glob("*.key.pem"))  # opened into memory only
    bundle = await call(bare_plane, "isthmus.ca.bundle", {}, TrustBundle)
    root = x509.load_pem_x509_certificate(bundle.roots_pem[0].encode())
    for _ in range(40):  # the queue group spreads requests: until each replica has signed
        leaf, roots = await sign_one(bare_plane)
        leaf.verify_directly_issued_by(root)
        assert roots == bundle.roots_pem
        if signed_by(bare_plane, "ca-a") and signed_by(bare_plane, "ca-b"):
            break
    assert signed_by(bare_plane, "ca-a") and signed_by(bare_plane, "ca-b")

    a.stop()  # the first machine goes away: the second keeps signing
    before = signed_by(bare_plane, "ca-b")
    leaf, _ = await sign_one(bare_plane)
    leaf.verify_directly_issued_by(root)
    assert signed_by(bare_plane, "ca-b") == before + 1

    a = await start_ca(bare_plane, "ca-a2", machine(tmp_path, "machine-a", kek))
    await ready(bare_plane, a)
    rotated = await call(bare_plane, "isthmus.ca.rotate", {}, RotateRootReply)
    assert rotated.ok and rotated.bundle is not None and len(rotated.bundle.roots_pem) == 2
    new_root = x509.load_pem_x509_certificate(rotated.bundle.roots_pem[1].encode())
    rotator, other = (a, b) if '"rotate-root"' in a.log_path.read_text() else (b, a)
    assert '"rotate-root"' in rotator.log_path.read_text() and '"rotate-root"' not in other.log_path.read_text()
    rotator.stop()  # only the replica that did not rotate is left: it followed through etcd and the KEK
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        leaf, roots = await sign_one(bare_plane)
        if roots == rotated.bundle.roots_pem or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert roots == rotated.bundle.roots_pem
    leaf.verify_directly_issued_by(new_root)
    assert "loaded the signing key sealed in etcd" in other.log_path.read_text()
    new_fp = sealed.fingerprint(new_root)
    assert set(await sealed_entries(bare_plane)) == {sealed.key_path(fp), sealed.key_path(new_fp)}
    secret = kek.read_text().strip()
    for log in (bare_plane.state_dir / "logs").glob("ca-*.log"):  # neither the KEK nor a key is ever logged
        text = log.read_text()
        assert secret not in text and secret.upper() not in text and "PRIVATE KEY" not in text


async def test_a_missing_or_wrong_kek_is_one_clear_line_and_exit_1(bare_plane: ControlPlane, tmp_path: Path) -> None:
    plain = await start_ca(bare_plane, "ca-plain", machine(tmp_path, "machine-a", None))
    await ready(bare_plane, plain)
    assert await sealed_entries(bare_plane) == {}  # without a KEK nothing goes into etcd
    plain.stop()
    kek = kek_file(tmp_path / "kek")
    sealer = await start_ca(bare_plane, "ca-sealer", machine(tmp_path, "machine-a", kek))
    await ready(bare_plane, sealer)  # the key on its disk is sealed into etcd now
    assert "sealed the signing key into etcd with the KEK" in sealer.log_path.read_text()
    assert len(await sealed_entries(bare_plane)) == 1

    other = kek_file(tmp_path / "other-kek")
    loose = tmp_path / "loose-kek"
    loose.write_bytes(kek.read_bytes())
    loose.chmod(0o644)
    for name, env, words in (
            ("ca-nokek", machine(tmp_path, "machine-b", None), "this ca has no KEK: pass the KEK file"),
            ("ca-wrongkek", machine(tmp_path, "machine-c", other),
             "the CA key in etcd does not decrypt with this KEK"),
            ("ca-wrongkek-local", machine(tmp_path, "machine-a", other),  # holds the key, but KEKs must agree
             "the CA key in etcd does not decrypt with this KEK"),
            ("ca-loosekek", machine(tmp_path, "machine-d", loose), "lets others read it: chmod 600"),
    ):
        await exits_with(await start_ca(bare_plane, name, env), words)
    assert not list((tmp_path / "machine-b" / "ca").glob("*.key.pem"))  # the keyless replica made no root
    assert sealer.is_running
    leaf, roots = await sign_one(bare_plane)  # and the mesh still signs with the one root
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(roots[0].encode()))
    assert len(roots) == 1


async def test_a_plugin_ca_sealed_by_one_replica_is_joined_by_a_replica_without_its_files(
        bare_plane: ControlPlane, tmp_path: Path) -> None:
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    root_key, ca_key = pki.key(), pki.key()
    root = pki.ca_cert("operator root", root_key, root_key.public_key(), now=now)
    inter = pki.ca_cert("operator intermediate", root_key, ca_key.public_key(), issuer=root.subject, now=now)
    files = {"ca-cert.pem": pki.pem(inter), "ca-key.pem": pki.pem(ca_key), "root-cert.pem": pki.pem(root)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    kek = kek_file(tmp_path / "kek")
    env = {**machine(tmp_path, "machine-a", kek), "ISTHMUS_PLUGIN_CA_CERT": str(tmp_path / "ca-cert.pem"),
           "ISTHMUS_PLUGIN_CA_KEY": str(tmp_path / "ca-key.pem"),
           "ISTHMUS_PLUGIN_CA_ROOT_CERT": str(tmp_path / "root-cert.pem")}
    a = await start_ca(bare_plane, "ca-plugin", env)
    await ready(bare_plane, a)
    raw = (await sealed_entries(bare_plane))[sealed.key_path(sealed.fingerprint(inter))]
    assert pki.pem(ca_key) not in raw and b"PRIVATE KEY" not in raw
    b = await start_ca(bare_plane, "ca-joiner", machine(tmp_path, "machine-b", kek))  # no plug-in files
    await ready(bare_plane, b)
    a.stop()
    leaf, roots = await sign_one(bare_plane)  # only the joiner is left
    assert roots == [pki.pem(root).decode()]  # the operator's root: the bundle was joined, not replaced
    leaf.verify_directly_issued_by(inter)
    assert "loaded the signing key sealed in etcd" in b.log_path.read_text()
    assert not list((tmp_path / "machine-b" / "ca").glob("*.key.pem"))


async def test_a_ca_given_the_previous_kek_seals_etcd_s_keys_again_with_the_new_one(
        bare_plane: ControlPlane, tmp_path: Path) -> None:
    old, new = kek_file(tmp_path / "old-kek"), kek_file(tmp_path / "new-kek")
    a = await start_ca(bare_plane, "ca-old", machine(tmp_path, "machine-a", old))
    await ready(bare_plane, a)
    a.stop()
    b = await start_ca(bare_plane, "ca-rotating", {**machine(tmp_path, "machine-b", new),
                                                  "ISTHMUS_CA_PREVIOUS_KEK_FILE": str(old)})
    await ready(bare_plane, b)
    assert '"keys": 1' in b.log_path.read_text()
    [raw] = (await sealed_entries(bare_plane)).values()
    assert decode(raw, SealedKey).kek_id == keks.kek_id(keks.load_kek(new))
    b.stop()
    await exits_with(await start_ca(bare_plane, "ca-stale", machine(tmp_path, "machine-c", old)),
                     "the CA key in etcd does not decrypt with this KEK")
    c = await start_ca(bare_plane, "ca-new", machine(tmp_path, "machine-d", new))  # the new KEK alone now
    await ready(bare_plane, c)
    leaf, roots = await sign_one(bare_plane)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(roots[0].encode()))
    other = kek_file(tmp_path / "other-kek")  # neither KEK: refused, and nothing is rewritten
    await exits_with(await start_ca(bare_plane, "ca-neither", {**machine(tmp_path, "machine-e", other),
                                                               "ISTHMUS_CA_PREVIOUS_KEK_FILE": str(old)}),
                     "does not decrypt with this KEK nor the previous KEK")
    assert list((await sealed_entries(bare_plane)).values()) == [raw]

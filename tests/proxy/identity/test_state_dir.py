"""proxy/identity/state_dir.py: key and chain kept in --state-dir with tight modes; what a restart reuses (checked
by a real X.509 worker child)."""

from __future__ import annotations

import os
import stat
import time

import pytest
from pathlib import Path

from proxy.identity.keys import key_pem, new_key
from proxy.identity.state_dir import CHAIN_FILE, KEY_FILE, ROOTS_FILE, StateDir, write_private
from tests.proxy.identity.testca import TestCa

ID = "spiffe://cluster.local/ns/default/sa/reviews"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_writes_key_chain_and_roots_0600_in_a_0700_dir(tmp_path: Path) -> None:
    ca = TestCa()
    store = StateDir(tmp_path / "state")
    store.prepare()
    material = ca.material(ID)
    store.save(material, [ca.pem])
    assert mode(store.path) == 0o700
    for name in (KEY_FILE, CHAIN_FILE, ROOTS_FILE):
        assert mode(store.path / name) == 0o600, name
    assert sorted(os.listdir(store.path)) == sorted([KEY_FILE, CHAIN_FILE, ROOTS_FILE])  # no temporary left
    assert (store.path / KEY_FILE).read_text() == material.key_pem and "PRIVATE KEY" in material.key_pem


def test_prepare_tightens_an_existing_open_dir(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    StateDir(path).prepare()
    assert mode(path) == 0o700


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o703])
def test_prepare_refuses_a_directory_others_may_write_and_leaves_its_mode(tmp_path: Path, mode: int) -> None:
    """Found by an attack: `--state-dir /tmp` (as root) made /tmp 0700, breaking every other user of the host. A
    directory others may write is shared: refused, untouched; one of our own is still tightened (above)."""
    path = tmp_path / "shared"
    path.mkdir()
    os.chmod(path, mode)
    with pytest.raises(OSError, match="others may write"):
        StateDir(path).prepare()
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_a_private_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "f", b"secret")
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o600 and (tmp_path / "f").read_bytes() == b"secret"


async def test_load_returns_the_stored_certificate_within_its_life(tmp_path: Path) -> None:
    ca = TestCa()
    store = StateDir(tmp_path)
    saved = ca.material(ID, ttl=600)
    store.save(saved, [ca.pem])
    checked, why = await StateDir(tmp_path).load(ID, time.time(), store.roots())
    assert why == "" and checked is not None
    loaded = checked.material
    assert loaded.serial == saved.serial and loaded.key_pem == saved.key_pem and loaded.chain == saved.chain
    assert store.roots() == [ca.pem] and checked.issuer == ca.fingerprint


async def test_nothing_stored_is_not_a_problem(tmp_path: Path) -> None:
    assert await StateDir(tmp_path).load(ID, time.time()) == (None, "")


async def test_an_expired_certificate_is_not_reused(tmp_path: Path) -> None:
    ca = TestCa()
    store = StateDir(tmp_path)
    store.save(ca.material(ID, ttl=60, start=time.time() - 120), [ca.pem])
    assert await store.load(ID, time.time()) == (None, "the stored certificate has expired")


async def test_a_certificate_of_another_identity_is_not_reused(tmp_path: Path) -> None:
    ca = TestCa()
    store = StateDir(tmp_path)
    store.save(ca.material(ID), [ca.pem])
    material, why = await store.load("spiffe://cluster.local/ns/default/sa/other", time.time())
    assert material is None and "this workload is spiffe://cluster.local/ns/default/sa/other" in why


async def test_a_key_that_does_not_match_the_chain_is_not_reused(tmp_path: Path) -> None:
    """A crash between the two renames leaves a new key beside the old chain."""
    ca = TestCa()
    store = StateDir(tmp_path)
    store.save(ca.material(ID), [ca.pem])
    write_private(tmp_path / KEY_FILE, key_pem(new_key()))
    material, why = await store.load(ID, time.time())
    assert material is None and "not for our key" in why


async def test_a_damaged_file_is_not_reused(tmp_path: Path) -> None:
    ca = TestCa()
    store = StateDir(tmp_path)
    store.save(ca.material(ID), [ca.pem])
    write_private(tmp_path / KEY_FILE, b"garbage")
    material, why = await store.load(ID, time.time())
    assert material is None and why.startswith("the stored certificate cannot be used")

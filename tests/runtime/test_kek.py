"""The KEK file and AES-256-GCM sealing (runtime/kek.py), pure: a sealed value opens only with the KEK
that sealed it, under the key path it was sealed for, unchanged to the byte."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime import kek as keks

WHERE = "/isthmus/ca/keys/ab12"
SECRET = b"-----BEGIN PRIVATE KEY----- stand-in for a PKCS#8 DER key"


def test_make_kek_writes_64_hex_digits_mode_0600_and_never_replaces_one(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "kek"
    assert keks.make_kek(path)
    first = path.read_bytes()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert len(first.strip()) == 64 and len(keks.load_kek(path)) == 32
    assert not keks.make_kek(path)  # a second start keeps the KEK: the sealed keys stay openable
    assert path.read_bytes() == first


@pytest.mark.parametrize("content,words", [
    (b"ab" * 31, "give 64 hex digits"),  # one byte short of 256 bits
    (b"ab" * 33, "give 64 hex digits"),  # one byte over
    (b"zz" * 32, "give 64 hex digits"),
    (bytes(range(200, 232)), "give 64 hex digits"),  # raw bytes: refused, not guessed at
    (b"a" * 5000, "give 64 hex digits"),
])
def test_a_kek_file_that_is_not_256_bits_of_hex_is_refused(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "kek"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ValueError, match=words):
        keks.load_kek(path)


def test_a_kek_file_with_whitespace_around_its_hex_is_read(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"  " + b"0f" * 32 + b"\n\n")
    path.chmod(0o600)
    assert keks.load_kek(path) == bytes([0x0F]) * 32


def test_a_kek_file_others_can_read_or_that_is_missing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    assert keks.make_kek(path)
    path.chmod(0o640)
    with pytest.raises(ValueError, match="mode 0640 lets others read it: chmod 600"):
        keks.load_kek(path)
    with pytest.raises(ValueError, match="cannot read it"):
        keks.load_kek(tmp_path / "absent")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_kek_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    """Mode 0600 but another user's (a symlink to it, too): that user reads it and can swap in a KEK of theirs,
    whose seal an etcd copy then opens for them. OpenSSH refuses such key files; so do we."""
    path = tmp_path / "kek"
    assert keks.make_kek(path)
    keks.load_kek(path)  # our own: fine
    os.chown(path, 65534, -1)  # nobody
    (tmp_path / "link").symlink_to(path)
    for named in (path, tmp_path / "link"):
        with pytest.raises(ValueError, match="owned by uid 65534, not by this user"):
            keks.load_kek(named)


def test_a_sealed_value_opens_with_its_kek_and_path_and_holds_no_plaintext() -> None:
    kek = os.urandom(32)
    kid, nonce, ciphertext = keks.seal(kek, WHERE, SECRET)
    assert kid == keks.kek_id(kek) and len(kid) == 16 and kid not in kek.hex()
    assert SECRET not in ciphertext and b"PRIVATE KEY" not in ciphertext
    assert len(ciphertext) == len(SECRET) + 16  # GCM's tag
    assert keks.unseal(kek, WHERE, kid, nonce, ciphertext) == SECRET
    assert keks.seal(kek, WHERE, SECRET)[1] != nonce  # a fresh nonce per sealing


def test_another_kek_is_refused_by_its_id_and_by_the_cipher() -> None:
    kek, other = os.urandom(32), os.urandom(32)
    kid, nonce, ciphertext = keks.seal(kek, WHERE, SECRET)
    with pytest.raises(keks.Unsealable, match="sealed with KEK"):
        keks.unseal(other, WHERE, kid, nonce, ciphertext)
    # relabelled with the other KEK's id, the tag still refuses it
    with pytest.raises(keks.Unsealable, match="changed since it was sealed"):
        keks.unseal(other, WHERE, keks.kek_id(other), nonce, ciphertext)


@pytest.mark.parametrize("part", ["ciphertext", "tag", "nonce"])
def test_one_changed_byte_of_ciphertext_tag_or_nonce_is_refused(part: str) -> None:
    kek = os.urandom(32)
    kid, nonce, ciphertext = keks.seal(kek, WHERE, SECRET)
    if part == "nonce":
        nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    else:
        at = 3 if part == "ciphertext" else len(ciphertext) - 1
        ciphertext = ciphertext[:at] + bytes([ciphertext[at] ^ 1]) + ciphertext[at + 1:]
    with pytest.raises(keks.Unsealable, match="changed since it was sealed"):
        keks.unseal(kek, WHERE, kid, nonce, ciphertext)


def test_a_sealed_value_moved_to_another_key_path_is_refused() -> None:
    kek = os.urandom(32)
    kid, nonce, ciphertext = keks.seal(kek, WHERE, SECRET)
    with pytest.raises(keks.Unsealable, match="moved from another key path"):
        keks.unseal(kek, WHERE[:-1] + "3", kid, nonce, ciphertext)  # one byte of the associated data


def test_the_associated_data_holds_the_format_the_path_and_the_kek_id() -> None:
    """A change of the format or the KEK id changes what GCM authenticates (not only the id check)."""
    kek = os.urandom(32)
    kid = keks.kek_id(kek)
    assert keks._associated(WHERE, kid) != keks._associated(WHERE, kid[:-1] + ("1" if kid[-1] == "0" else "0"))
    assert WHERE.encode() in keks._associated(WHERE, kid) and f"v{keks.FORMAT}".encode() in keks._associated(WHERE, kid)


def test_a_kek_file_at_its_size_bound_is_read_and_one_byte_over_is_refused(tmp_path: Path) -> None:
    """MAX_FILE bytes are read from a KEK file (64 hex digits and whitespace): at the bound it is read, one
    byte over it is refused, not cut off and then parsed."""
    path = tmp_path / "kek"
    hexkey = b"0f" * 32
    path.write_bytes(hexkey + b"\n" * (keks.MAX_FILE - len(hexkey)))  # at the bound
    path.chmod(0o600)
    assert keks.load_kek(path) == bytes([0x0F]) * 32
    path.write_bytes(hexkey + b"\n" * (keks.MAX_FILE + 1 - len(hexkey)))  # one byte over
    with pytest.raises(ValueError, match="give 64 hex digits"):
        keks.load_kek(path)

"""The ca's key-encryption key (KEK): a 256-bit key the operator holds and etcd never does, and the
AES-256-GCM sealing of the ca's signing key with it (docs/security.md, "The KEK").

Read by `isthmus up` (to refuse a bad file, or make one, before anything starts) and by the ca (to seal
and unseal), so it lives here, below both.

    load_kek(path) -> bytes          ValueError: one line naming the file and the fault
    make_kek(path) -> bool           a new KEK, create-exclusive, mode 0600; False if the file already exists
    kek_id(kek) -> str               a public name of the KEK (16 hex digits), stored beside the ciphertext
    seal(kek, where, plaintext) -> (kek_id, nonce, ciphertext)
    unseal(kek, where, kek_id, nonce, ciphertext) -> plaintext      Unsealable

The file holds 64 hex digits (`openssl rand -hex 32`), whitespace around them ignored, and must not be
readable by group or others, nor owned by another user. `where` (the etcd key path) and the KEK's id are the associated data, so a
sealed value moved under another key path, or relabelled with another KEK's id, does not open.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's 96-bit nonce, random per sealing (NIST SP 800-38D 8.2.2; a handful of sealings per KEK)
FORMAT = 1  # bumped if the associated data or the cipher ever change
MAX_FILE = 4096  # bytes read from a KEK file: 64 hex digits and some whitespace


class Unsealable(Exception):
    """The sealed value does not open with this KEK: another KEK sealed it, or it was changed."""


def load_kek(path: str | Path) -> bytes:
    """The 32-byte KEK in `path`; ValueError (one line: the file and what to do) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO's open() would wait for a writer
    except OSError as exc:
        raise ValueError(f"KEK file {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"KEK file {path}: not a regular file")
        if mode & 0o077:
            raise ValueError(f"KEK file {path}: mode {stat.S_IMODE(mode):04o} lets others read it: chmod 600 {path}")
        if info.st_uid != os.geteuid():  # as OpenSSH refuses a key file another user owns: they read and replace it
            raise ValueError(f"KEK file {path}: owned by uid {info.st_uid}, not by this user (uid {os.geteuid()}), "
                             f"who can read and replace it: chown {os.geteuid()} {path}, or use a copy you own")
        data = os.read(fd, MAX_FILE + 1)
    finally:
        os.close(fd)
    text = data.strip()
    try:
        kek = bytes.fromhex(text.decode("ascii")) if len(data) <= MAX_FILE else b""
    except (UnicodeDecodeError, ValueError):
        kek = b""
    if len(kek) != KEK_BYTES:
        raise ValueError(f"KEK file {path}: give 64 hex digits, a 256-bit key (`openssl rand -hex 32 > {path}`)")
    return kek


def make_kek(path: str | Path) -> bool:
    """Write a new random KEK to `path` (mode 0600, its directory made 0700 if missing); False, writing
    nothing, when the file already exists (a second `isthmus up` never replaces the KEK)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, os.urandom(KEK_BYTES).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def kek_id(kek: bytes) -> str:
    """16 hex digits naming the KEK: which KEK sealed a value, told without trying it (a one-way hash,
    domain-separated; it reveals nothing usable about a 256-bit key)."""
    return hashlib.sha256(b"isthmus ca kek id\x00" + kek).hexdigest()[:16]


def _associated(where: str, kid: str) -> bytes:
    return f"isthmus-ca-sealed/v{FORMAT}\x00{where}\x00{kid}".encode()


def seal(kek: bytes, where: str, plaintext: bytes) -> tuple[str, bytes, bytes]:
    """(kek_id, nonce, ciphertext with GCM's 16-byte tag) of `plaintext`, bound to the key path `where`."""
    kid = kek_id(kek)
    nonce = os.urandom(NONCE_BYTES)
    return kid, nonce, AESGCM(kek).encrypt(nonce, plaintext, _associated(where, kid))


def unseal(kek: bytes, where: str, kid: str, nonce: bytes, ciphertext: bytes) -> bytes:
    """The plaintext; Unsealable when `kek` is not the KEK that sealed it, or the ciphertext, nonce, key path
    or KEK id were changed (GCM's tag covers them all)."""
    if kid != kek_id(kek):
        raise Unsealable(f"it was sealed with KEK {kid[:16]!r}, this KEK is {kek_id(kek)!r}")
    if len(nonce) != NONCE_BYTES:
        raise Unsealable("its nonce is damaged")
    try:
        return AESGCM(kek).decrypt(nonce, ciphertext, _associated(where, kid))
    except InvalidTag:
        raise Unsealable("it was changed since it was sealed, or moved from another key path") from None

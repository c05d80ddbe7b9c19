"""The TLS secrets in etcd, private keys sealed with the ca's KEK (docs/secrets.md):

    /isthmus/secrets/<namespace>/<name>    SecretRecord (proto/secrets.py): certificates in the clear, the key
                                           AES-256-GCM sealed (runtime/kek.py, `where` = this key path)

    store = SecretStore(store, keyring, max_secrets)
    await store.put(put, info, now) -> (SecretInfo, created)   SecretRefused when ISTHMUS_CA_MAX_SECRETS exist
    await store.get(namespace, name) -> (SecretRecord, version) | None
    store.open_key(namespace, name, record) -> key PEM bytes   keks.Unsealable
    await store.infos(namespace) -> [SecretInfo]               "" for every namespace
    await store.delete(namespace, name) -> bool
    await store.count() -> int

The keyring: the KEK seals (ISTHMUS_CA_KEK_FILE); without one, a key of this ca's own in
<state-dir>/ca/secrets.kek (0600, made on first start), so etcd never holds a key it could open. Opening
tries every key the ring knows by its id (the KEK, the previous KEK, the local key), so secrets written
before a KEK was given still open.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from proto.secrets import SecretInfo, SecretRecord, TlsSecretPut
from runtime import kek as keks
from runtime.bus import decode, encode
from runtime.store import Store
from services.ca.secret_check import SecretRefused

PREFIX = "/isthmus/secrets/"
LOCAL_KEY = "secrets.kek"  # in <state-dir>/ca/: the sealing key when the ca runs without a KEK
CAS_ATTEMPTS = 10


def record_key(namespace: str, name: str) -> str:
    return f"{PREFIX}{namespace}/{name}"


def _make_local_key(path: Path) -> None:
    """A new local key at `path` unless one exists, appearing whole: written to a temporary file, then
    hard-linked into place (which fails if another replica on this machine got there first), so a
    replica starting at the same moment never reads a half-written key."""
    if path.exists():
        return
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    keks.make_kek(temp)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)


class Keyring:
    """The key that seals (first) and every key that may open: {kek id: key}."""

    def __init__(self, sealing: bytes, *others: bytes | None) -> None:
        self.sealing = sealing
        self.keys = {keks.kek_id(k): k for k in (sealing, *others) if k is not None}

    @classmethod
    def for_ca(cls, state_dir: str, kek: bytes | None, previous: bytes | None) -> "Keyring":
        """The KEK seals; without one the local key (made if absent). ValueError: a bad local key file."""
        local_path = Path(state_dir) / "ca" / LOCAL_KEY
        if kek is None:
            _make_local_key(local_path)
        local = keks.load_kek(local_path) if kek is None or local_path.exists() else None
        sealing = kek if kek is not None else local
        assert sealing is not None
        return cls(sealing, previous, local)

    def seal(self, where: str, plaintext: bytes) -> tuple[str, bytes, bytes]:
        return keks.seal(self.sealing, where, plaintext)

    def open(self, where: str, kid: str, nonce: bytes, ciphertext: bytes) -> bytes:
        key = self.keys.get(kid)
        if key is None:
            raise keks.Unsealable(f"it was sealed with KEK {kid[:16]!r}, which this ca does not hold; give every "
                                  "ca replica the same KEK (--ca-kek-file)")
        return keks.unseal(key, where, kid, nonce, ciphertext)


class SecretStore:
    def __init__(self, store: Store, keyring: Keyring, max_secrets: int) -> None:
        self.store, self.keyring, self.max_secrets = store, keyring, max_secrets

    async def count(self) -> int:
        return len(await self.store.keys(PREFIX))

    async def put(self, put: TlsSecretPut, info: SecretInfo, now: float) -> tuple[SecretInfo, bool]:
        """Create or replace (a compare-and-swap on the record's revision); the stored info, and whether it is new."""
        where = record_key(put.namespace, put.name)
        kid, nonce, sealed = ("", b"", b"")
        if put.key_pem:
            kid, nonce, sealed = self.keyring.seal(where, put.key_pem.encode())
        for _ in range(CAS_ATTEMPTS):
            entry = await self.store.get(where)
            created = now
            if entry is None:
                if await self.count() >= self.max_secrets:
                    raise SecretRefused(f"{self.max_secrets} secrets exist (ISTHMUS_CA_MAX_SECRETS): delete unused "
                                        "ones first")
            else:
                try:
                    created = decode(entry.value, SecretRecord).info.created or now
                except msgspec.DecodeError:
                    pass  # not ours to read: replaced
            stored = msgspec.structs.replace(info, created=created, updated=now, version=0)
            record = SecretRecord(info=stored, cert_chain_pem=put.cert_chain_pem, ca_cert_pem=put.ca_cert_pem,
                                  kek_id=kid, nonce=nonce, sealed_key=sealed)
            if await self.store.put_if_revision(where, encode(record), entry.mod_revision if entry else 0):
                after = await self.store.get(where)
                version = after.mod_revision if after is not None else 0
                return msgspec.structs.replace(stored, version=version), entry is None
        raise SecretRefused(f"secret {put.namespace}/{put.name} is being written by others at once; try again")

    async def get(self, namespace: str, name: str) -> tuple[SecretRecord, int] | None:
        entry = await self.store.get(record_key(namespace, name))
        if entry is None:
            return None
        record = decode(entry.value, SecretRecord)
        return msgspec.structs.replace(record, info=msgspec.structs.replace(record.info, version=entry.mod_revision)), \
            entry.mod_revision

    def open_key(self, namespace: str, name: str, record: SecretRecord) -> bytes:
        """The key PEM (b"" for a CA-only secret); keks.Unsealable."""
        if not record.sealed_key:
            return b""
        return self.keyring.open(record_key(namespace, name), record.kek_id, record.nonce, record.sealed_key)

    async def infos(self, namespace: str) -> list[SecretInfo]:
        """Every secret's info (of `namespace`, or all for ""), oldest first; unreadable records skipped."""
        entries, _ = await self.store.list(record_key(namespace, "") if namespace else PREFIX)
        out = []
        for entry in entries:
            try:
                info = decode(entry.value, SecretRecord).info
            except msgspec.DecodeError:
                continue
            out.append(msgspec.structs.replace(info, version=entry.mod_revision))
        out.sort(key=lambda i: (i.created, i.namespace, i.name))
        return out

    async def delete(self, namespace: str, name: str) -> bool:
        return await self.store.delete(record_key(namespace, name))

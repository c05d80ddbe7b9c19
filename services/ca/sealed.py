"""The ca's signing keys in etcd, sealed with the operator's KEK, so ca replicas on other machines can
serve from the same material (only when the ca runs with a KEK: ISTHMUS_CA_KEK_FILE).

    /isthmus/ca/keys/<fingerprint>   SealedKey (proto/ca.py): the key's PKCS#8 DER under AES-256-GCM
                                     (runtime/kek.py), the certificates in the clear

    await store_key(store, kek, authority) -> None     seal and write the signing key of `authority`
    await load_key(store, kek, fp, roots) -> Authority | None   None when etcd holds no sealed key for fp
    await drop_key(store, fp)
    await reseal(store, kek, previous) -> int      KEK rotation: what `previous` sealed, sealed again with kek

load_key raises SealError: the value does not open with this KEK (another KEK sealed it, or it was
changed), or what it opens is not a key for its certificate, or the chain does not verify to one of
`roots` (the fingerprints of the bundle in force). Nothing here logs or returns the key in any form but
the Authority object.
"""

from __future__ import annotations

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from proto.ca import SealedKey
from runtime import kek as keks
from runtime.bus import decode, encode
from runtime.store import Store
from services.ca.material import fingerprint
from services.ca.signer import Authority, pem

KEYS = "/isthmus/ca/keys/"


class SealError(Exception):
    """The sealed key in etcd cannot be used with this KEK (the message is one line for an operator)."""


def key_path(fp: str) -> str:
    return f"{KEYS}{fp}"


def seal_key(kek: bytes, authority: Authority) -> SealedKey:
    """The SealedKey of `authority`'s signing key (pure: no I/O)."""
    fp = fingerprint(authority.cert)
    der = authority.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    kid, nonce, ciphertext = keks.seal(kek, key_path(fp), der)
    self_signed = authority.cert == authority.root
    return SealedKey(fingerprint=fp, cert_pem=pem(authority.cert),
                     chain_pem=[pem(c) for c in authority.intermediates],
                     root_pem="" if self_signed else pem(authority.root),
                     kek_id=kid, nonce=nonce, ciphertext=ciphertext)


def open_key(kek: bytes, fp: str, sealed: SealedKey, roots: set[str]) -> Authority:
    """The Authority a SealedKey read from key_path(fp) holds, checked; SealError otherwise (pure)."""
    try:
        der = keks.unseal(kek, key_path(fp), sealed.kek_id, sealed.nonce, sealed.ciphertext)
    except keks.Unsealable as exc:
        raise SealError(f"the CA key in etcd does not decrypt with this KEK ({key_path(fp)}: {exc}); give "
                        "every ca replica the same KEK file (ISTHMUS_CA_KEK_FILE, isthmus up --ca-kek-file)") from None
    try:
        cert = x509.load_pem_x509_certificate(sealed.cert_pem.encode())
        chain = tuple(x509.load_pem_x509_certificate(p.encode()) for p in sealed.chain_pem)
        root = x509.load_pem_x509_certificate(sealed.root_pem.encode()) if sealed.root_pem else cert
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise SealError(f"{key_path(fp)} opens with this KEK but holds no usable certificate or key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) or fingerprint(cert) != fp \
            or key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise SealError(f"{key_path(fp)}: the sealed key does not belong to the certificate {fp[:16]}")
    path = [cert, *chain, root]
    try:
        for child, issuer in zip(path, path[1:]):  # a self-signed root (root is cert) verifies itself
            child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise SealError(f"{key_path(fp)}: the certificate does not chain to its root") from None
    if fingerprint(root) not in roots:
        raise SealError(f"{key_path(fp)}: its root {fingerprint(root)[:16]} is not in the trust bundle in force")
    return Authority(cert, key, chain, root)


async def store_key(store: Store, kek: bytes, authority: Authority) -> None:
    """Write the sealed signing key (overwriting: a fingerprint names one certificate, hence one key)."""
    sealed = seal_key(kek, authority)
    await store.put(key_path(sealed.fingerprint), encode(sealed))


async def load_key(store: Store, kek: bytes, fp: str, roots: set[str]) -> Authority | None:
    """The checked Authority sealed under fp; None when etcd holds none. SealError, StoreError."""
    entry = await store.get(key_path(fp))
    if entry is None:
        return None
    try:
        sealed = decode(entry.value, SealedKey)
    except ValueError:
        raise SealError(f"{key_path(fp)} in etcd is not a sealed key") from None
    return open_key(kek, fp, sealed, roots)


async def drop_key(store: Store, fp: str) -> None:
    await store.delete(key_path(fp))


async def reseal(store: Store, kek: bytes, previous: bytes) -> int:
    """Seal again with `kek` every key in etcd that `previous` sealed (a compare-and-swap each: a key
    rewritten meanwhile is left as it is); how many were resealed. SealError for a key that opens with
    neither KEK. The certificates are not checked here: load_key checks them whenever a key is used."""
    entries, _ = await store.list(KEYS)
    done = 0
    for entry in entries:
        try:
            value = decode(entry.value, SealedKey)
        except ValueError:
            raise SealError(f"{entry.key} in etcd is not a sealed key") from None
        if value.kek_id == keks.kek_id(kek):
            continue
        try:
            der = keks.unseal(previous, entry.key, value.kek_id, value.nonce, value.ciphertext)
        except keks.Unsealable as exc:
            raise SealError(f"the CA key in etcd does not decrypt with this KEK nor the previous KEK ({entry.key}: "
                            f"{exc})") from None
        kid, nonce, ciphertext = keks.seal(kek, entry.key, der)
        new = msgspec.structs.replace(value, kek_id=kid, nonce=nonce, ciphertext=ciphertext)
        if await store.put_if_revision(entry.key, encode(new), entry.mod_revision):
            done += 1
    return done

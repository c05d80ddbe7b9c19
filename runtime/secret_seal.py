"""Sealing a gateway's TLS private key to the X25519 key it made for one fetch (proto/secrets.SealedTlsSecret).

The ca seals (services/ca/secret_service.py), the gateway opens (proxy/gateway/secret_client.py); both
import this, so the scheme is written once:

    shared  = X25519(reply private key, ephemeral public key)   (or the other way round)
    aes_key = HKDF-SHA256(shared, salt=b"", info=b"isthmus secret v1", length=32)
    sealed  = AES-256-GCM(aes_key).encrypt(nonce, key_pem, f"{namespace}/{name}@{version}".encode())

    seal_to(reply_key, namespace, name, version, key_pem) -> (ephemeral_key, nonce, sealed)
    open_sealed(private, ephemeral_key, nonce, sealed, namespace, name, version) -> key_pem   SealBroken

A fresh ephemeral key per secret and a fresh reply key per fetch: a recorded reply opens with nothing
the gateway keeps, and a sealed key moved to another name or version does not open (the associated data).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO = b"isthmus secret v1"
NONCE_BYTES = 12


class SealBroken(Exception):
    """A sealed key that does not open: another reply key, or changed in transit."""


def _aes_key(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"", info=INFO).derive(shared)


def _associated(namespace: str, name: str, version: int) -> bytes:
    return f"{namespace}/{name}@{version}".encode()


def raw_public(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of `key`'s public half (SecretFetchRequest.reply_key)."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal_to(reply_key: bytes, namespace: str, name: str, version: int, key_pem: bytes) -> tuple[bytes, bytes, bytes]:
    """(ephemeral public key, nonce, ciphertext with GCM's tag); ValueError when reply_key is not an X25519 key."""
    peer = X25519PublicKey.from_public_bytes(reply_key)
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(peer)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_aes_key(shared)).encrypt(nonce, key_pem, _associated(namespace, name, version))
    return raw_public(ephemeral), nonce, sealed


def open_sealed(private: X25519PrivateKey, ephemeral_key: bytes, nonce: bytes, sealed: bytes, namespace: str,
                name: str, version: int) -> bytes:
    """The key PEM; SealBroken when it does not open with `private` for (namespace, name, version)."""
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_key))
        if len(nonce) != NONCE_BYTES:
            raise ValueError("nonce")
        return AESGCM(_aes_key(shared)).decrypt(nonce, sealed, _associated(namespace, name, version))
    except (ValueError, InvalidTag):
        raise SealBroken(f"the key of {namespace}/{name}@{version} does not open with this fetch's key") from None

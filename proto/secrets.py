"""The ca's secret store: TLS credentials for gateways (Istio's `credentialName`), and how they travel.

Istio reads a Kubernetes secret of type kubernetes.io/tls (keys tls.crt, tls.key, optionally ca.crt, or a
second secret `<name>-cacert` holding ca.crt) in the gateway workload's namespace
(istio.io/latest/docs/tasks/traffic-management/ingress/secure-ingress/). Isthmus keeps the same shape:

- The operator stores one with `isthmus create secret tls NAME -n NS --cert --key [--ca-cert]`
  (CA_SECRET_PUT); the ca checks the key matches the certificate and seals the key with its KEK
  (runtime/kek.py: AES-256-GCM, a key etcd never holds) before writing it to etcd. Replacing a secret is a
  rotation: gateways pick it up without a restart.
- `isthmus get secrets -n NS` (CA_SECRET_LIST) shows names, types, hosts and expiry; never a key.
- A gateway fetches the secrets its servers name on its own identity-scoped subject
  (`isthmus.ca.secret.fetch.<namespace>.<service account>`, which nats-server lets only that identity
  publish on, and whose reply only it can read). The ca serves only secrets of the requester's own
  namespace, as Istio serves a gateway the secrets of its namespace. The private key travels sealed to a
  key the gateway made for that request (X25519 + HKDF-SHA256 + AES-256-GCM), so neither the bus nor its
  logs ever hold it in clear.
- On every change the ca publishes a SecretEvent (name and version, never material) on
  `isthmus.ca.secret.events.<namespace>`; gateways of that namespace fetch again.

Times are Unix seconds. Sizes are bounded here so nothing unbounded is decoded.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.base import Message

SECRET_TYPE_TLS = "kubernetes.io/tls"
SECRET_TYPE_OPAQUE = "Opaque"  # `create secret generic NAME-cacert --from-file=ca.crt=...`: a CA only
CACERT_SUFFIX = "-cacert"  # Istio: a MUTUAL server's CA may come from a second secret `<credentialName>-cacert`

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
Namespace = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
ChainPem = Annotated[str, msgspec.Meta(max_length=64 * 1024)]  # a leaf and its intermediates
KeyPem = Annotated[str, msgspec.Meta(max_length=16 * 1024)]  # RSA 8192 in PEM is ~6.4 KiB
CaPem = Annotated[str, msgspec.Meta(max_length=256 * 1024)]  # a bundle of client CAs
X25519Key = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
MAX_FETCH = 64  # secrets per fetch request


class TlsSecretPut(Message):
    """CA_SECRET_PUT (operator) -> SecretPutReply: create or replace (rotate) one TLS secret."""

    namespace: Namespace
    name: Name
    cert_chain_pem: ChainPem  # leaf first
    key_pem: KeyPem
    ca_cert_pem: CaPem = ""  # for MUTUAL / OPTIONAL_MUTUAL servers: the CAs client certificates must chain to


class SecretInfo(Message, omit_defaults=False):
    """One stored secret as the operator sees it: never the key."""

    namespace: str
    name: str
    type: str = SECRET_TYPE_TLS
    version: int = 0  # the etcd revision it was written at: a gateway compares it to what it serves
    hosts: list[str] = []  # the leaf's DNS SANs (then its CN when it has none)
    not_before: float = 0.0
    not_after: float = 0.0
    key_type: str = ""  # "EC P-256", "RSA 2048", "Ed25519"
    has_ca_cert: bool = False
    created: float = 0.0
    updated: float = 0.0


class SecretPutReply(Message):
    ok: bool
    error: str = ""  # one line: what is wrong with the input (never echoes the key)
    info: SecretInfo | None = None
    created: bool = False  # False: an existing secret was replaced
    warnings: list[str] = []  # accepted, but worth a look (an expired leaf: kubectl accepts it, Envoy serves it)


class SecretListRequest(Message):
    """CA_SECRET_LIST (operator) -> SecretListReply; namespace "": all, oldest first, at most `limit`."""

    namespace: Annotated[str, msgspec.Meta(max_length=63)] = ""
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


class SecretListReply(Message):
    ok: bool
    secrets: list[SecretInfo] = []
    total: int = 0
    error: str = ""


class SecretDeleteRequest(Message):
    """CA_SECRET_DELETE (operator) -> SecretDeleteReply."""

    namespace: Namespace
    name: Name


class SecretDeleteReply(Message):
    ok: bool
    error: str = ""  # "not found: ..." when there was none


class SecretFetchRequest(Message):
    """`isthmus.ca.secret.fetch.<namespace>.<service account>` (a proxy, on its own identity) -> SecretFetchReply.
    `reply_key`: the raw X25519 public key (32 bytes) the private keys are sealed to, made for this request."""

    names: Annotated[list[Name], msgspec.Meta(max_length=MAX_FETCH)]
    reply_key: X25519Key


class SealedTlsSecret(Message):
    """One secret for a gateway. The key is sealed: shared = X25519(gateway's reply key, `ephemeral_key`),
    aes_key = HKDF-SHA256(shared, salt=b"", info=b"isthmus secret v1"), key_pem = AES-256-GCM(aes_key).open(
    `nonce`, `sealed_key`, associated data f"{namespace}/{name}@{version}".encode())."""

    namespace: str
    name: str
    version: int
    cert_chain_pem: str
    ca_cert_pem: str = ""
    ephemeral_key: bytes = b""  # raw X25519 public key, 32 bytes
    nonce: bytes = b""  # 12 bytes
    sealed_key: bytes = b""
    not_after: float = 0.0


class SecretFetchReply(Message):
    ok: bool
    secrets: list[SealedTlsSecret] = []
    missing: list[str] = []  # names asked for that the requester's namespace does not hold
    error: str = ""


class SecretEvent(Message):
    """Published by the ca on `isthmus.ca.secret.events.<namespace>` after a secret is written or deleted."""

    namespace: str
    name: str
    version: int = 0
    deleted: bool = False


class SecretRecord(Message):
    """One secret as etcd holds it (/isthmus/secrets/<namespace>/<name>, services/ca/secret_store.py): the
    certificates in the clear, the private key only sealed with the ca's KEK (runtime/kek.py, `where` = the
    etcd key). `info.version` is filled from the entry's mod_revision when read."""

    info: SecretInfo
    cert_chain_pem: str = ""
    ca_cert_pem: str = ""
    kek_id: str = ""
    nonce: bytes = b""
    sealed_key: bytes = b""  # empty for an Opaque (CA-only) secret

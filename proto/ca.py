"""The ca's messages: bootstrap tokens, certificate signing, and the trust bundle (Istio's Citadel, for VMs).

Identity follows SPIFFE as Istio uses it: a workload's identity is the URI SAN
`spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` of a short-lived X.509 certificate
(istio.io/latest/docs/concepts/security/#istio-identity). The proxy makes its key locally; only a CSR
(PEM, PKCS#10) and a proof travel on the bus:

- a bootstrap token (`isthmus token create`), for the first certificate: `SignRequest.token`;
- or its current, unexpired certificate chain plus an ECDSA-SHA256 signature over the CSR's DER bytes
  made with that certificate's key (`proof_chain_pem`, `proof_signature`), for renewal. A captured
  renewal request is worth nothing to anyone else: it only yields a certificate for the CSR's key.

The ca signs only the identity the proof entitles (the token's namespace and service account, or the
current certificate's SPIFFE ID); whatever else the CSR asks for is ignored. Times are Unix seconds (UTC).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.base import Message

# Bounds on what a requester may send (a CSR is ~500 bytes; a chain of three P-256 certificates ~2.5 KiB).
PemText = Annotated[str, msgspec.Meta(max_length=16_384)]
TokenText = Annotated[str, msgspec.Meta(max_length=256)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]


class SignRequest(Message):
    """`isthmus.ca.sign` (queue group `ca`) -> SignReply. Exactly one proof: `token`, or both proof fields."""

    csr_pem: PemText
    token: TokenText = ""  # bootstrap: the secret `isthmus token create` printed
    proof_chain_pem: Annotated[list[PemText], msgspec.Meta(max_length=4)] = []  # renewal: leaf first
    proof_signature: Annotated[bytes, msgspec.Meta(max_length=256)] = b""  # renewal: ECDSA-SHA256 over CSR DER
    ttl_seconds: int = 0  # asked lifetime; 0: the ca's default; clamped to [60 s, the ca's maximum]


class SignReply(Message):
    """A signed certificate, or the reason it was refused (`ok` false, `error` says why, never a secret)."""

    ok: bool
    cert_chain_pem: list[str] = []  # leaf first, then any intermediates up to (not including) the root
    roots_pem: list[str] = []  # the trust bundle in force when it was signed
    spiffe_id: str = ""
    serial: str = ""  # hex
    not_before: float = 0.0
    not_after: float = 0.0
    error: str = ""


class TrustBundle(Message):
    """`isthmus.ca.bundle` (request, any payload) and `isthmus.ca.bundle.updates` (published on each change).

    `roots_pem` holds every root a workload must trust: two while a root rotation is under way."""

    trust_domain: str
    roots_pem: list[str]
    version: int = 0  # grows with every change; a receiver ignores a bundle older than the one it holds


class TokenRecord(Message):
    """A bootstrap token as etcd holds it (under /isthmus/ca/tokens/<id>): the secret only as its SHA-256."""

    id: str
    namespace: str
    service_account: str
    secret_sha256: str  # hex
    created: float
    expires: float
    uses: int  # how many signings it may still pay for; 0: used up
    max_uses: int
    revoked: bool = False


class TokenCreateRequest(Message):
    """`isthmus.ca.token.create` (operator only) -> TokenCreateReply."""

    namespace: Name
    service_account: Name
    ttl_seconds: int = 3600
    uses: int = 1


class TokenCreateReply(Message):
    ok: bool
    id: str = ""
    token: str = ""  # shown once; the ca keeps only its hash
    expires: float = 0.0
    error: str = ""


class TokenInfo(Message):
    """One token for `isthmus token list`: never its secret or hash."""

    id: str
    namespace: str
    service_account: str
    created: float
    expires: float
    uses: int
    max_uses: int
    revoked: bool


class TokenListReply(Message):
    """`isthmus.ca.token.list` (operator only; any payload) -> this."""

    tokens: list[TokenInfo] = []
    error: str = ""


class TokenRevokeRequest(Message):
    """`isthmus.ca.token.revoke` (operator only) -> TokenRevokeReply."""

    id: Annotated[str, msgspec.Meta(max_length=64)]


class TokenRevokeReply(Message):
    ok: bool
    error: str = ""


class RotateRootReply(Message):
    """`isthmus.ca.rotate` (operator only; any payload): a new root signs from now on; the old one stays in
    the bundle until every certificate it signed has expired (`old_retires_at`)."""

    ok: bool
    bundle: TrustBundle | None = None
    old_retires_at: float = 0.0
    error: str = ""


class CaRoot(Message):
    """One root of the trust bundle as etcd holds it (public certificate only; its key stays on the ca's disk)."""

    fingerprint: str  # hex SHA-256 of the certificate's DER; names its files under <state-dir>/ca/
    cert_pem: str
    latest_not_after: float = 0.0  # no certificate it signed outlives this (Unix seconds; 0: none signed yet)
    retiring_since: float = 0.0  # when it stopped signing (a rotation); 0: it signs, or it is the operator's root


class CaState(Message):
    """The ca's durable state in etcd (/isthmus/ca/bundle): the roots in force and who signs.

    `signer` is the fingerprint of the signing certificate: the newest root's, or with a plug-in CA the
    operator's intermediate. `version` grows with every change of the roots (TrustBundle.version)."""

    trust_domain: str
    roots: list[CaRoot]
    signer: str
    version: int = 1
    plugin: bool = False  # signing with the operator's CA (Istio's plug-in CA): rotate-root is theirs to do


class SealedKey(Message):
    """A signing key in etcd (/isthmus/ca/keys/<fingerprint>), only when the ca runs with a KEK: AES-256-GCM
    ciphertext of its PKCS#8 DER, which only a holder of the KEK opens (runtime/kek.py; the key path and
    `kek_id` are the associated data). The certificates are public and travel in the clear beside it; a
    replica that opens the key checks it matches `cert_pem` and that the chain verifies to `root_pem`."""

    fingerprint: str  # of cert_pem: the CaState.signer it signs for
    cert_pem: str  # the signing certificate (a mesh root, or the plug-in CA's intermediate)
    kek_id: str  # which KEK sealed it (runtime/kek.kek_id), so a wrong KEK is told from a damaged value
    nonce: bytes
    ciphertext: bytes
    chain_pem: list[str] = []  # plug-in CA: the certificates between cert_pem and root_pem
    root_pem: str = ""  # the root cert_pem chains to ("" for a self-signed root: cert_pem itself)
    format: int = 1

"""The sidecar's X.509 worker: one request and one reply between a sidecar and a short-lived child process of
its own (proxy/identity/x509_worker.py), so that `cryptography` (~7 MB of RSS) is loaded only for the
tenth of a second an issuance takes, never by the long-lived proxy. Never on the bus.

Both travel as msgpack over the child's stdin and stdout pipes, a request of at most MAX_REQUEST bytes, a
reply of at most MAX_REPLY bytes. Requests (tagged by `op`):

    MakeKey(identity, proof_key_pem, roots_pem)
                                            -> KeyMade: a new ECDSA P-256 key (PKCS#8 PEM), its CSR, and for a
                                               renewal the proof: ECDSA-SHA256 over the CSR's DER by the
                                               current key (proto/ca.py SignRequest.proof_signature); with
                                               roots_pem, those read as ReadRoots does (the first bundle and
                                               the first key take one child at start)
    CheckChain(key_pem, chain_pem, expected_id, roots_pem)
                                            -> ChainChecked: the chain parsed and checked against the key and
                                               the SPIFFE ID; the roots parsed (unreadable texts left out) and
                                               the one that issued the chain's top
    ReadRoots(roots_pem, chain_pem)         -> RootsRead: every root parsed (one unreadable refuses them all),
                                               and the one that issued the top of `chain_pem` (the held chain)
    any                                     -> WorkerFailed(kind, error): kind "material" (the key, chain or
                                               roots are not usable: error says why), "request" (unreadable
                                               request), "internal" (a bug of ours)

A root is named by its fingerprint (SHA-256 of its DER, hex); "" names none. Times are Unix seconds.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.base import Message

MAX_REQUEST = 512 * 1024  # bytes: a key, a chain and a bundle of roots are a few KiB
MAX_REPLY = 512 * 1024

Pem = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
PemList = Annotated[list[Pem], msgspec.Meta(max_length=32)]


class CertFields(Message, frozen=True):
    """What the sidecar shows and schedules by of one certificate (/certs, the debug subject, renewal)."""

    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    serial: str  # hex, as Envoy's /certs shows it
    not_before: float
    not_after: float
    fingerprint: str  # SHA-256 of the DER, hex
    uris: list[str] = []  # URI SANs (a workload certificate holds its SPIFFE ID here)
    dns: list[str] = []  # DNS SANs
    ips: list[str] = []  # IP SANs


class MakeKey(Message, tag_field="op", tag="make_key"):
    identity: Annotated[str, msgspec.Meta(max_length=2048)]  # the CSR's only URI SAN
    proof_key_pem: Pem = ""  # renewal: the current key, which signs the proof; "": a first certificate
    roots_pem: PemList = []  # a bundle's roots to read too (KeyMade.roots, or .roots_error when one is unreadable)


class CheckChain(Message, tag_field="op", tag="check_chain"):
    key_pem: Pem
    chain_pem: PemList  # leaf first; each text may hold several certificates
    expected_id: Annotated[str, msgspec.Meta(max_length=2048)]
    roots_pem: PemList = []


class ReadRoots(Message, tag_field="op", tag="read_roots"):
    roots_pem: PemList
    chain_pem: PemList = []  # the chain held, to name the root that issued its top


WorkerRequest = MakeKey | CheckChain | ReadRoots


class KeyMade(Message, tag_field="op", tag="key_made"):
    key_pem: str  # PKCS#8, unencrypted: this pipe is the only way it leaves the child
    csr_pem: str
    proof_signature: bytes = b""  # with MakeKey.proof_key_pem only
    roots: list[CertFields] = []  # MakeKey.roots_pem read (all of them, or none and roots_error says why)
    roots_error: str = ""


class ChainChecked(Message, tag_field="op", tag="chain_checked"):
    chain: list[CertFields]  # leaf first
    chain_pem: list[str]  # one PEM per certificate, leaf first
    roots: list[CertFields] = []  # the readable roots of CheckChain.roots_pem
    issuer: str = ""  # fingerprint of the root that issued the chain's top


class RootsRead(Message, tag_field="op", tag="roots_read"):
    roots: list[CertFields]
    issuer: str = ""  # fingerprint of the root that issued ReadRoots.chain_pem's top


class WorkerFailed(Message, tag_field="op", tag="failed"):
    kind: str  # "material" | "request" | "internal"
    error: str


WorkerReply = KeyMade | ChainChecked | RootsRead | WorkerFailed

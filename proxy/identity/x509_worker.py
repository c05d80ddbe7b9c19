"""The X.509 worker: a short-lived child process of the sidecar that does its `cryptography` work (the key, the
CSR, the renewal proof, reading chains and roots), so the long-lived sidecar never loads that library (~7 MB
of RSS per sidecar, docs/performance.md). Run by x509_client.py only, as

    sys.executable -P -m proxy.identity.x509_worker   (no shell, no arguments; -P: not from the working directory)

It reads ONE request (proto/identity_worker.py, msgpack, at most MAX_REQUEST bytes) on stdin until EOF,
writes one reply on stdout and exits 0; a request it cannot read gets WorkerFailed("request"). Nothing is
written anywhere else: a new private key leaves this process only as KeyMade.key_pem on its stdout pipe,
which only the parent sidecar holds, and the current key (for the renewal proof, or to check a stored
chain against) arrives only on its stdin pipe. Who may use it: only the sidecar, for its own identity.

`cryptography` is imported at start, before the request is read: the sidecar starts a worker before it
needs one (while the ca signs), so the import overlaps the wait.

`handle(request) -> reply` is the same work in-process (tests, which may load `cryptography` themselves).
"""

from __future__ import annotations

import sys

import msgspec

from proto.identity_worker import (MAX_REPLY, MAX_REQUEST, CheckChain, KeyMade, MakeKey, ReadRoots, WorkerFailed, WorkerReply,
                                   WorkerRequest)
from proxy.identity.keys import csr_pem, key_pem, load_key, new_key, proof_signature
from proxy.identity.material import MaterialError
from proxy.identity.x509_read import check_chain, read_roots

_decoder = msgspec.msgpack.Decoder(WorkerRequest)  # type: ignore[arg-type]
_encoder = msgspec.msgpack.Encoder()


def handle(request: WorkerRequest) -> WorkerReply:
    """The reply to one request; never raises for what a request holds (WorkerFailed says why)."""
    try:
        match request:
            case MakeKey(identity=identity, proof_key_pem=proof_key_pem):
                key = new_key()  # a new key for every certificate
                csr = csr_pem(key, identity)
                proof = proof_signature(load_key(proof_key_pem.encode()), csr) if proof_key_pem else b""
                made = KeyMade(key_pem=key_pem(key).decode(), csr_pem=csr, proof_signature=proof)
                if request.roots_pem:
                    try:
                        made.roots = read_roots(request.roots_pem, []).roots
                    except MaterialError as exc:
                        made.roots_error = str(exc)
                return made
            case CheckChain():
                return check_chain(load_key(request.key_pem.encode()), request.chain_pem, request.expected_id,
                                   request.roots_pem)
            case ReadRoots():
                return read_roots(request.roots_pem, request.chain_pem)
    except (MaterialError, ValueError, TypeError) as exc:  # an unreadable or non-EC key is a ValueError
        return WorkerFailed(kind="material", error=str(exc) or type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: the parent logs it and tries again later
        return WorkerFailed(kind="internal", error=f"{type(exc).__name__}: {exc}")
    return WorkerFailed(kind="request", error=f"unknown request {type(request).__name__}")


def answer(data: bytes) -> bytes:
    """The encoded reply to an encoded request."""
    if len(data) > MAX_REQUEST:
        return _encoder.encode(WorkerFailed(kind="request", error=f"the request is over {MAX_REQUEST} bytes"))
    try:
        request = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        return _encoder.encode(WorkerFailed(kind="request", error=f"unreadable request: {str(exc)[:200]}"))
    reply = _encoder.encode(handle(request))
    if len(reply) > MAX_REPLY:
        # a reply echoes the chain and adds each certificate's names as text, so a request within every bound
        # can still read back over MAX_REPLY (~1.75x: hundreds of SANs): the certificates' fault, said once as
        # such, never a reply the sidecar refuses as a broken worker and asks for again at every backoff
        return _encoder.encode(WorkerFailed(kind="material", error=f"the certificates' fields read back over "
                                            f"{MAX_REPLY} bytes: not a workload chain or trust bundle"))
    return reply


def main() -> int:
    data = sys.stdin.buffer.read(MAX_REQUEST + 1)
    if not data:  # the parent went away (or closed a worker it did not need): nothing to answer
        return 0
    sys.stdout.buffer.write(answer(data))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

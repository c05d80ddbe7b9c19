"""The TLS contexts of the mTLS data path, built once per certificate or bundle change, never per connection.

    provider = TlsProvider()
    provider.update(material, roots_pem)      # on every new certificate or bundle (agent.py)
    ctx = provider.current                    # None until the first certificate
    server: ctx.server  (requires a client certificate that chains to the bundle)
    client: ctx.client  (presents ours; verifies the server's chain to the bundle), then
            check_peer_identity(transport.get_extra_info("peercert"), expected_spiffe_id) -> (matched, found)

Both contexts: TLS 1.2 minimum, 1.3 when the peer has it (OpenSSL negotiates the highest both speak), the
stdlib's default cipher suites (ECDHE with AES-GCM / ChaCha20). The client does not check host names: as in
Istio, the peer is authenticated by the SPIFFE ID it presents, which the caller checks after the handshake.

No dropped connections on rotation: an SSL transport keeps a reference to the context it was made with for
its whole life, and a context's certificate and trust store never change after it is built. `update()` swaps
`current` (one attribute assignment on the event loop) to a new pair; listeners and the pool read
`provider.current` when they accept or open a connection, so connections open before keep their old
certificate and roots until they close, and every new handshake uses the new ones. The ca keeps old and new
roots in the bundle while a rotation is under way, so old-chain and new-chain peers verify each other.

`load_cert_chain` reads only files: key and chain are written to one 0600 file in a private 0700 directory
(in /dev/shm when it exists, so the key does not reach a disk), loaded, and unlinked at once.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.identity.material import Material
from proxy.identity.spiffe import peer_spiffe_ids

SHM = "/dev/shm"


@dataclass(frozen=True)
class TlsContexts:
    """One certificate and one bundle, as server and client contexts."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    spiffe_id: str
    serial: str
    bundle_version: int


def _private_dir() -> Path:
    base = SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="isthmus-tls-", dir=base))  # mkdtemp makes it 0700


def _context(purpose: int, material: Material, roots_pem: list[str], private_dir: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    if purpose == ssl.PROTOCOL_TLS_CLIENT:
        ctx.check_hostname = False  # the SPIFFE ID is checked instead (check_peer_identity)
    else:
        # No TLS 1.3 session tickets: sidecars never resume (every new connection is a full handshake), and
        # OpenSSL's default of two tickets cost a handshake ~0.7 ms of CPU across the pair (docs/performance.md)
        ctx.num_tickets = 0
    ctx.load_verify_locations(cadata="".join(roots_pem))
    fd, name = tempfile.mkstemp(dir=private_dir, suffix=".pem")  # 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write((material.key_pem + "".join(material.chain_pem)).encode())
        ctx.load_cert_chain(name)
    finally:
        os.unlink(name)
    return ctx


def build_contexts(material: Material, roots_pem: list[str], bundle_version: int = 0,
                   private_dir: Path | None = None) -> TlsContexts:
    """Server and client contexts for `material` trusting `roots_pem`; ssl.SSLError when OpenSSL refuses
    them (a key that does not match, an unreadable root)."""
    own = private_dir is None
    directory = _private_dir() if own else private_dir
    assert directory is not None
    try:
        return TlsContexts(server=_context(ssl.PROTOCOL_TLS_SERVER, material, roots_pem, directory),
                           client=_context(ssl.PROTOCOL_TLS_CLIENT, material, roots_pem, directory),
                           spiffe_id=material.spiffe_id, serial=material.serial, bundle_version=bundle_version)
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)


class TlsProvider:
    """Holds the contexts in force (`current`, None until a certificate and a bundle are both held)."""

    def __init__(self) -> None:
        self.current: TlsContexts | None = None
        self.builds = 0  # how many times contexts were built (a test pins "once per change")

    def update(self, material: Material, roots_pem: list[str], bundle_version: int = 0) -> TlsContexts:
        contexts = build_contexts(material, roots_pem, bundle_version)
        self.builds += 1
        self.current = contexts  # new handshakes from now on; open connections keep theirs
        return contexts


def peer_identity(peercert: dict[str, Any] | None) -> str:
    """The SPIFFE ID the verified peer presented ("" when none). peercert: the decoded certificate as
    `SSLObject.getpeercert()` gives it; on an asyncio TLS transport read get_extra_info("peercert"), which the
    transport decoded once at the handshake (aiofastnet decodes through a temporary file: never again)."""
    ids = peer_spiffe_ids(peercert)
    return ids[0] if len(ids) == 1 else ",".join(ids)


def check_peer_identity(peercert: dict[str, Any] | None, expected: str) -> tuple[bool, str]:
    """(True, found) when the peer's only SPIFFE URI SAN is `expected`; else (False, what it presented,
    "" for nothing) for the log line "expected X, found Y" (Istio refuses such a peer: flag UF)."""
    found = peer_identity(peercert)
    return found == expected and bool(expected), found

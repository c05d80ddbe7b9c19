"""The proxy's own state directory (`proxy run --state-dir`): the workload key and certificate chain, so a
restart or reboot within the certificate's life needs no new token (istio/istio#27691).

Layout (the file names Istio's agent uses for file-mounted certificates):
    <dir>/key.pem         PKCS#8 key, mode 0600
    <dir>/cert-chain.pem  leaf first, then intermediates, mode 0600
    <dir>/root-cert.pem   the trust bundle when it was saved, mode 0600 (for openssl and operators; the
                          proxy asks the ca for the bundle in force at every start)
The directory is made (or tightened) to 0700. Each file is written to a temporary name and renamed, so a
crash leaves the old file or the new one, never half of one; a key and chain that do not belong together
(a crash between the two renames) are ignored at load, like an expired chain or another identity.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from proxy.identity import x509_client
from proxy.identity.material import Checked, Material, MaterialError

KEY_FILE = "key.pem"
CHAIN_FILE = "cert-chain.pem"
ROOTS_FILE = "root-cert.pem"


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from its creation on (never briefly readable), atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask, and an old tmp file keeps its mode
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def prepare(self) -> None:
        """Create the directory 0700, or tighten an existing one of ours to 0700; OSError when it cannot be, or
        when others may write it (/tmp, say): that directory is shared, and making it 0700 would break the host's
        other users, so it is refused untouched."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = os.stat(self.path).st_mode
        if mode & (stat.S_IWOTH | stat.S_ISVTX):
            raise OSError(f"others may write this directory (mode {stat.S_IMODE(mode):o}): give the sidecar a "
                          "directory of its own (it is made 0700)")
        os.chmod(self.path, 0o700)

    def save(self, material: Material, roots_pem: list[str]) -> None:
        """OSError when the disk refuses (the caller logs it: the proxy keeps serving from memory)."""
        write_private(self.path / KEY_FILE, material.key_pem.encode())
        write_private(self.path / CHAIN_FILE, "".join(material.chain_pem).encode())
        if roots_pem:
            write_private(self.path / ROOTS_FILE, "".join(roots_pem).encode())

    def stored(self) -> bool:
        """True when a key or a chain is stored (load() has something to check)."""
        return (self.path / KEY_FILE).exists() or (self.path / CHAIN_FILE).exists()

    async def load(self, expected_id: str, now: float, roots_pem: Sequence[str] = (),
                   worker: x509_client.Worker | None = None) -> tuple[Checked | None, str]:
        """(the stored material checked against `roots_pem`, "") when it is there, readable, ours and unexpired
        at `now`; else (None, why not) - "" when nothing is stored. `worker`: the X.509 worker to check it in (a new
        one by default). X509WorkerError when the worker failed: nothing was learnt of the stored certificate (the
        caller checks it again later rather than drop it for a token)."""
        key_path, chain_path = self.path / KEY_FILE, self.path / CHAIN_FILE
        if not self.stored():
            return None, ""
        try:
            checked = await x509_client.check_chain(key_path.read_text(), [chain_path.read_text()], expected_id,
                                                    roots_pem, worker=worker)
        except (OSError, ValueError) as exc:  # MaterialError is a ValueError
            return None, f"the stored certificate cannot be used: {exc}"
        if checked.material.expired(now):
            return None, "the stored certificate has expired"
        return checked, ""

    def roots(self) -> list[str]:
        try:
            return [(self.path / ROOTS_FILE).read_text()]
        except OSError:
            return []


__all__ = ["StateDir", "MaterialError", "write_private"]

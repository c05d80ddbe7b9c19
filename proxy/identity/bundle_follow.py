"""The identity agent's trust bundle (agent.py's IdentityAgent is a BundleFollower): fetched at start
(CA_BUNDLE), then followed (CA_BUNDLE_UPDATES; older versions ignored), its roots read by an X.509 worker with
which of them issued our chain; the TLS contexts rebuilt on each change; and, when the newest root did not sign
our certificate (a root rotation), renewal moved to within ROTATION_SPREAD seconds (jittered). A bundle the
worker could not read is fetched again after BUNDLE_RETRY seconds.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import msgspec

from proto.ca import TrustBundle
from proto.identity_worker import CertFields, KeyMade
from proxy.identity import ca_client, x509_client
from proxy.identity.bundle import Bundle, BundleError
from proxy.identity.ca_client import CaRefused
from proxy.identity.config import IdentityConfig
from proxy.identity.material import Material, MaterialError
from proxy.identity.schedule import rotation_delay
from proxy.identity.state_dir import StateDir
from proxy.identity.tls import TlsProvider
from proxy.identity.x509_client import X509WorkerError
from runtime.bus import Bus, BusError, decode
from runtime.log import get_logger

log = get_logger("proxy.identity")
BUNDLE_RETRY = 5.0  # seconds before a bundle the X.509 worker failed to read is fetched again


class BundleFollower:
    """The bundle half of IdentityAgent: these attributes are the agent's (agent.py sets them)."""

    config: IdentityConfig
    identity: str
    provider: TlsProvider
    bundle: Bundle
    state: StateDir | None
    material: Material | None
    roots_unversioned: list[str]
    roots_unversioned_read: list[CertFields]
    issuer: str
    error: str
    bus: Bus | None
    due: float
    clock: Callable[[], float]
    _wake: asyncio.Event
    _lock: asyncio.Lock
    _key: KeyMade | None
    _ahead: x509_client.Ahead
    _bundle_stale: bool

    def renew_soon(self, delay: float = 0.0) -> None:
        """Move the next renewal to `delay` seconds from now (a root rotation; tests drive the timer so)."""
        self.due = min(self.due, self.clock() + delay) if self.material is not None else self.due
        self._wake.set()

    def roots(self) -> list[str]:
        return self.bundle.roots_pem or self.roots_unversioned

    def _rebuild(self) -> None:
        roots = self.roots()
        if self.material is None or not roots:
            return
        try:
            self.provider.update(self.material, roots, self.bundle.version)
        except ssl.SSLError as exc:
            self.error = f"TLS contexts cannot be built: {exc}"
            log.error("TLS contexts cannot be built", error=str(exc))

    async def _ensure_bundle(self) -> None:
        if (self.bundle.held and not self._bundle_stale) or self.bus is None:
            return
        self._bundle_stale = False  # set again if the X.509 worker fails to read this one
        try:
            await self.take_bundle(await ca_client.fetch_bundle(self.bus))
        except (BusError, CaRefused) as exc:
            log.debug("trust bundle not fetched", error=str(exc))

    async def _on_bundle_update(self, data: bytes) -> None:
        try:
            bundle = decode(data, TrustBundle)
        except msgspec.DecodeError as exc:
            log.warning("trust bundle update ignored", error=str(exc)[:200])
            return
        await self.take_bundle(bundle)

    async def take_bundle(self, bundle: TrustBundle) -> bool:
        """Hold `bundle` if it is newer (its roots read by an X.509 worker, with which of them issued our chain);
        rebuild the contexts; renew soon if the newest root did not sign us."""
        async with self._lock:
            try:
                if not self.bundle.wanted(bundle):
                    return False
                held = self.material
                if held is None and self._key is None:  # the first key is made in the same child: one child less
                    self._key = made = await x509_client.make_key(self.identity, roots_pem=bundle.roots_pem,
                                                                  worker=await self._ahead.take())
                    if made.roots_error:
                        raise MaterialError(made.roots_error)
                    roots, issuer = made.roots, ""
                else:
                    read = await x509_client.read_roots(bundle.roots_pem, held.chain_pem if held is not None else [],
                                                        worker=await self._ahead.take())
                    roots, issuer = read.roots, read.issuer
                self.bundle.hold(bundle, roots)
            except MaterialError as exc:
                log.warning("trust bundle refused", error=f"bundle version {bundle.version}: {exc}")
                return False
            except BundleError as exc:
                log.warning("trust bundle refused", error=str(exc))
                return False
            except X509WorkerError as exc:  # not the bundle's fault: fetch the one in force again soon
                log.warning("trust bundle not read", error=str(exc), retry_in_s=BUNDLE_RETRY)
                self._bundle_stale = True
                asyncio.get_running_loop().call_later(BUNDLE_RETRY, self._wake.set)
                return False
            self.issuer = issuer
            self.roots_unversioned, self.roots_unversioned_read = [], []
        log.info("trust bundle", version=bundle.version, roots=len(bundle.roots_pem))
        self._rebuild()
        if self.material is not None and self.bundle.needs_rotation(self.issuer):
            delay = rotation_delay(self.config.rotation_spread)
            log.info("root rotation: renewing with the new root", in_s=round(delay, 1), serial=self.material.serial)
            self.renew_soon(delay)
        if self.state is not None and self.material is not None:
            try:
                self.state.save(self.material, self.roots())
            except OSError as exc:
                log.error("cannot save the trust bundle", state_dir=str(self.state.path), error=str(exc))
        return True

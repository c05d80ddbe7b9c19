"""The identity loop of one sidecar (Istio's pilot-agent SDS side): the first certificate, renewal at about
half life, the trust bundle, and the TLS contexts built from them. Runs beside the listeners; nothing here
is on the request path, and the listeners do not wait for it.

First certificate, in this order:
1. a usable certificate in `--state-dir` (ours, unexpired, matching its key): no token needed;
2. `--token` / ISTHMUS_TOKEN, else `--token-file` (read at each try, so an operator can drop a new one);
3. else a token minted for our own namespace and service account over CA_TOKEN_CREATE (the local
   convenience; logged as a warning).
Until this process has held a certificate, a refusal is fatal (IdentityFatal: `proxy run` prints its one
line and exits 1): the ca's reason for a bad, expired, revoked or used-up token; for a refused mint, how
to get a token; for a token of another identity, which one it was. The ca not answering is not a refusal:
the proxy keeps serving and tries again with backoff (schedule.py).

Renewal: with the current certificate as proof and a new key each time, never the bootstrap token, so a
token's expiry never stops rotation (istio/istio#49202). Failed renewals retry with bounded backoff. A
certificate that expires anyway is logged as an error at every try, shown by /certs, and the agent falls
back to the bootstrap sources (a refreshed --token-file, a mint) without ever exiting.

Bundle: fetched at start (CA_BUNDLE), then followed (CA_BUNDLE_UPDATES; older versions ignored). When a new
bundle's newest root did not sign our certificate (a root rotation), renewal moves to within
ROTATION_SPREAD seconds (jittered), so the mesh moves to the new root while both are trusted.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from proto.ca import TrustBundle
from proto.subjects import CA_BUNDLE_UPDATES
from proxy.identity import ca_client
from proxy.identity.bundle import Bundle, BundleError
from proxy.identity.ca_client import CaRefused
from proxy.identity.keys import new_key
from proxy.identity.material import Material, MaterialError
from proxy.identity.schedule import GRACE_JITTER, GRACE_RATIO, ROTATION_SPREAD, Backoff, renew_at, rotation_delay
from proxy.identity.spiffe import spiffe_id
from proxy.identity.state_dir import StateDir
from proxy.identity.tls import TlsProvider
from runtime.bootstrap_tokens import TokenRefused, read_token_file
from runtime.bus import Bus, BusError, decode
from runtime.log import get_logger

log = get_logger("proxy.identity")


class IdentityFatal(Exception):
    """The proxy cannot get its identity as started and waiting will not help: one line for `proxy run`."""


@dataclass(frozen=True)
class IdentityConfig:
    trust_domain: str
    namespace: str
    service_account: str
    token: str = ""  # --token / ISTHMUS_TOKEN
    token_file: str = ""  # --token-file
    state_dir: str = ""  # --state-dir; "" keeps key and certificate in memory only
    ttl_seconds: int = 0  # asked certificate lifetime; 0: the ca's default
    grace_ratio: float = GRACE_RATIO
    grace_jitter: float = GRACE_JITTER
    rotation_spread: float = ROTATION_SPREAD
    # How to create a token for ourselves when none is given (the local convenience): a coroutine giving one,
    # raising CaRefused when refused; None: not possible (the bus lets only the operator create tokens, and
    # this sidecar does not hold the operator's client config). proxy/sidecar/control_plane.py supplies it.
    mint: Callable[[], Awaitable[str]] | None = None

    @property
    def spiffe_id(self) -> str:
        return spiffe_id(self.trust_domain, self.namespace, self.service_account)

    def how_to_get_a_token(self) -> str:
        return (f"get one with `isthmus token create --namespace {self.namespace} --service-account "
                f"{self.service_account}` and pass it with --token (or --token-file, env ISTHMUS_TOKEN)")


class IdentityAgent:
    def __init__(self, config: IdentityConfig, provider: TlsProvider | None = None,
                 clock: Callable[[], float] = time.time, backoff: Backoff | None = None) -> None:
        self.config = config
        self.identity = config.spiffe_id
        self.provider = provider or TlsProvider()
        self.clock = clock
        self.bundle = Bundle(config.trust_domain)
        self.state = StateDir(config.state_dir) if config.state_dir else None
        self.material: Material | None = None
        self.roots_unversioned: list[str] = []  # the roots a SignReply named, until a versioned bundle arrives
        self.due = 0.0  # Unix time of the next renewal
        self.error = ""  # the last problem, for /certs; "" once resolved
        self.renewals = 0
        self.ever_held = False  # a refusal is fatal only before the first certificate
        self.bus: Bus | None = None
        self.backoff = backoff or Backoff()
        self._wake = asyncio.Event()

    # --- start-up (synchronous: before the listeners, so /certs and TLS are ready at once) ---

    def load_stored(self) -> None:
        """Adopt the certificate in --state-dir if it is usable. OSError when the directory cannot be made."""
        if self.state is None:
            return
        self.state.prepare()
        material, why = self.state.load(self.identity, self.clock())
        if material is None:
            if why:
                log.warning("stored certificate not used", state_dir=str(self.state.path), reason=why)
            return
        self._adopt(material, self.state.roots(), fresh=False)
        log.info("certificate loaded", spiffe_id=material.spiffe_id, serial=material.serial,
                 expires_in_s=round(material.not_after - self.clock()), state_dir=str(self.state.path))

    # --- the loop ---

    async def run(self, bus: Bus) -> None:
        """Until cancelled. IdentityFatal before the first certificate when the ca refuses for good."""
        self.bus = bus
        await bus.listen(CA_BUNDLE_UPDATES, self._on_bundle_update)
        backoff = self.backoff
        while True:
            await self._ensure_bundle()
            now = self.clock()
            material = self.material
            try:
                if material is None or material.expired(now):
                    await self._bootstrap()
                elif self.due > now:
                    await self._sleep(self.due - now)
                    continue
                elif self.bundle.held and self.bundle.root_of(material) is None:
                    # no root in force signed it (a --state-dir certificate from a control plane made anew, or
                    # before a switch to a plug-in CA): the ca refuses it as a proof, so only a token can help
                    log.warning("the certificate is not under the trust bundle in force: asking for a new one with "
                                "the bootstrap token", serial=material.serial, spiffe_id=self.identity)
                    await self._bootstrap()
                else:
                    await self._renew(material)
                backoff.reset()
            except (BusError, CaRefused, MaterialError, ssl.SSLError, OSError) as exc:
                self.error = str(exc) or type(exc).__name__
                remaining = material.not_after - now if material is not None else None
                wait = backoff.next(remaining)
                self._log_failure(exc, material, now, wait)
                await self._sleep(wait)

    def renew_soon(self, delay: float = 0.0) -> None:
        """Move the next renewal to `delay` seconds from now (a root rotation; tests drive the timer so)."""
        self.due = min(self.due, self.clock() + delay) if self.material is not None else self.due
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _log_failure(self, exc: Exception, material: Material | None, now: float, wait: float) -> None:
        kind = "refused" if isinstance(exc, (CaRefused, MaterialError)) else "unreachable"
        fields = {"error": self.error, "retry_in_s": round(wait, 1), "spiffe_id": self.identity}
        if material is not None and material.expired(now):
            log.error("workload certificate expired: cannot renew it; peers will refuse this workload until it "
                      "gets a new one (a new --token-file, or a token the operator creates)",
                      expired_s_ago=round(now - material.not_after), **fields)
        elif material is None:
            log.warning(f"no certificate yet: the ca {kind}", **fields)
        else:
            log.warning(f"renewal failed: the ca {kind}", expires_in_s=round(material.not_after - now), **fields)

    # --- first certificate ---

    async def _bootstrap(self) -> None:
        assert self.bus is not None
        first = not self.ever_held
        token, minted = await self._token(first)
        key = new_key()
        try:
            reply = await ca_client.sign_with_token(self.bus, key, self.identity, token, self.config.ttl_seconds)
            material = Material.build(key, reply.cert_chain_pem, self.identity)
        except CaRefused as exc:
            if first:
                what = "the token minted for this proxy" if minted else "the token"
                raise IdentityFatal(f"the ca refused {what}: {exc.reason}") from None
            raise
        except MaterialError as exc:
            if first:
                raise IdentityFatal(f"the token does not give this workload its identity: {exc}; "
                                    f"{self.config.how_to_get_a_token()}") from None
            raise
        self._adopt(material, reply.roots_pem)
        log.info("certificate issued", spiffe_id=material.spiffe_id, serial=material.serial,
                 expires_in_s=round(material.not_after - self.clock()), minted_token=minted)

    async def _token(self, first: bool) -> tuple[str, bool]:
        """(token, minted). IdentityFatal (first time) or CaRefused/OSError when none can be had."""
        if self.config.token:
            return self.config.token, False
        if self.config.token_file:
            try:
                text = read_token_file(self.config.token_file)
            except OSError as exc:
                if first:
                    raise IdentityFatal(f"--token-file {self.config.token_file}: {exc.strerror or exc}") from None
                raise
            except TokenRefused as exc:  # more than a token's bytes, or not a token
                if first:
                    raise IdentityFatal(f"--token-file {self.config.token_file}: {exc}") from None
                raise CaRefused(f"--token-file {self.config.token_file}: {exc}") from None
            if text:
                return text, False
            if first:
                raise IdentityFatal(f"--token-file {self.config.token_file} is empty")
            raise CaRefused(f"--token-file {self.config.token_file} is empty")
        if self.config.mint is None:
            reason = "no operator client config to create one with"
            if first:
                raise IdentityFatal(f"this proxy has no token and may not create one ({reason}): "
                                    f"{self.config.how_to_get_a_token()}")
            raise CaRefused(reason)
        log.warning("no token given: creating one for this workload with the operator's client config (local "
                    "convenience)", spiffe_id=self.identity)
        try:
            return await self.config.mint(), True
        except CaRefused as exc:
            if first:
                raise IdentityFatal(f"this proxy has no token and may not create one ({exc.reason}): "
                                    f"{self.config.how_to_get_a_token()}") from None
            raise

    # --- renewal ---

    async def _renew(self, current: Material) -> None:
        assert self.bus is not None
        key = new_key()  # a new key per certificate
        reply = await ca_client.renew(self.bus, current, key, self.config.ttl_seconds)
        material = Material.build(key, reply.cert_chain_pem, self.identity)
        self._adopt(material, reply.roots_pem)
        self.renewals += 1
        log.info("certificate renewed", spiffe_id=material.spiffe_id, serial=material.serial,
                 expires_in_s=round(material.not_after - self.clock()))

    def _adopt(self, material: Material, roots_pem: list[str], fresh: bool = True) -> None:
        """Hold `material`; fresh: just received from the ca (saved to --state-dir), else loaded from it."""
        self.material = material
        self.ever_held = True
        self.error = ""
        # a fresh certificate's life counts from now: the ca backdates notBefore (schedule.py)
        start = max(material.not_before, self.clock()) if fresh else material.not_before
        self.due = renew_at(start, material.not_after, self.config.grace_ratio, self.config.grace_jitter)
        if roots_pem and not self.bundle.held:
            self.roots_unversioned = list(roots_pem)
        self._rebuild()
        if fresh and self.state is not None:
            try:
                self.state.save(material, self.roots())
            except OSError as exc:  # we keep serving from memory; a restart will need a token
                log.error("cannot save the certificate", state_dir=str(self.state.path), error=str(exc))

    # --- bundle ---

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
        if self.bundle.held or self.bus is None:
            return
        try:
            self.take_bundle(await ca_client.fetch_bundle(self.bus))
        except (BusError, CaRefused) as exc:
            log.debug("trust bundle not fetched", error=str(exc))

    async def _on_bundle_update(self, data: bytes) -> None:
        try:
            bundle = decode(data, TrustBundle)
        except msgspec.DecodeError as exc:
            log.warning("trust bundle update ignored", error=str(exc)[:200])
            return
        self.take_bundle(bundle)

    def take_bundle(self, bundle: TrustBundle) -> bool:
        """Hold `bundle` if it is newer; rebuild the contexts; renew soon if the new root did not sign us."""
        try:
            if not self.bundle.accept(bundle):
                return False
        except BundleError as exc:
            log.warning("trust bundle refused", error=str(exc))
            return False
        log.info("trust bundle", version=bundle.version, roots=len(bundle.roots_pem))
        self.roots_unversioned = []
        self._rebuild()
        if self.material is not None and self.bundle.needs_rotation(self.material):
            delay = rotation_delay(self.config.rotation_spread)
            log.info("root rotation: renewing with the new root", in_s=round(delay, 1), serial=self.material.serial)
            self.renew_soon(delay)
        if self.state is not None and self.material is not None:
            try:
                self.state.save(self.material, self.roots())
            except OSError as exc:
                log.error("cannot save the trust bundle", state_dir=str(self.state.path), error=str(exc))
        return True

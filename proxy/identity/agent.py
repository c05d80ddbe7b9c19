"""The identity loop of one sidecar (Istio's pilot-agent SDS side): the first certificate, renewal at about
half life, the trust bundle, and the TLS contexts built from them. Runs beside the listeners; nothing here
is on the request path, and the listeners do not wait for it.

First certificate: from a usable certificate in `--state-dir` (ours, unexpired, matching its key; checked again
with backoff while the X.509 worker fails, never dropped for a token on that account), else with a
bootstrap token (config.py: --token, --token-file, or one minted). Until this process has held a certificate, a
refusal is fatal (IdentityFatal: `proxy run` prints its one line and exits 1): the ca's reason for a bad,
expired, revoked or used-up token; for a refused mint, how to get a token; for a token of another identity,
which one it was. The ca not answering is not a refusal: the proxy keeps serving and tries again with backoff
(schedule.py).

Renewal: with the current certificate as proof and a new key each time, never the bootstrap token, so a
token's expiry never stops rotation (istio/istio#49202). Failed renewals retry with bounded backoff. A
certificate that expires anyway is logged as an error at every try, shown by /certs, and the agent falls
back to the bootstrap sources (a refreshed --token-file, a mint) without ever exiting.

Bundle (bundle_follow.py): fetched at start, then followed. When a new bundle's newest root did not sign our
certificate (a root rotation), renewal moves to within ROTATION_SPREAD seconds (jittered), so the mesh moves to
the new root while both are trusted.

X.509 work (the key, the CSR, the proof, reading chains and roots) runs in a short-lived child per step
(x509_client.py), so `cryptography` never loads into the sidecar: the agent holds PEM texts and parsed fields.
At start-up two children are ready ahead (`proxy run` starts them before its imports: load_stored's `early`;
else prefetch): one makes the first key and reads the first bundle, one checks the first certificate (on a
restart: the stored one, and the first bundle); later, each check's child is started before the ca is asked. Checks and bundle changes run one at a time (a
lock), so the root a certificate is said to come from is always read against the roots in force.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence

from proto.ca import SignReply
from proto.identity_worker import CertFields, KeyMade
from proto.subjects import CA_BUNDLE_UPDATES
from proxy.identity import ca_client, x509_client
from proxy.identity.bundle import Bundle
from proxy.identity.bundle_follow import BundleFollower
from proxy.identity.ca_client import CaRefused
from proxy.identity.config import IdentityConfig, IdentityFatal, bootstrap_token
from proxy.identity.material import Checked, Material, MaterialError
from proxy.identity.schedule import Backoff, renew_at
from proxy.identity.state_dir import StateDir
from proxy.identity.tls import TlsProvider
from proxy.identity.x509_client import Worker, X509WorkerError
from runtime.bus import Bus, BusError
from runtime.log import get_logger

log = get_logger("proxy.identity")
SPARE_SECONDS = 10.0  # the longest an X.509 worker started ahead at start-up waits for its request


class IdentityAgent(BundleFollower):
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
        self.roots_unversioned_read: list[CertFields] = []  # ... as the X.509 worker read them (for /certs)
        self.issuer = ""  # fingerprint of the root in force that issued our certificate's chain; "" none
        self.due = 0.0  # Unix time of the next renewal
        self.error = ""  # the last problem, for /certs; "" once resolved
        self.renewals = 0
        self.ever_held = False  # a refusal is fatal only before the first certificate
        self.bus: Bus | None = None
        self.backoff = backoff or Backoff()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # a chain check and its adoption, or a bundle change: one at a time
        self._key: KeyMade | None = None  # the first key, made with the first bundle's roots (take_bundle)
        self._ahead = x509_client.Ahead()  # children started at start-up for the first key and check (prefetch)
        self._bundle_stale = False  # a bundle could not be read: fetch the one in force again
        # the X.509 worker failed to check the --state-dir certificate at start: check it again before any token (a
        # sidecar on a workload's host often has none: it would exit for want of one, its valid certificate unused)
        self._stored_unchecked = False

    # --- start-up: before the bus, so /certs and TLS are ready before the control plane is reached ---

    def prepare(self) -> None:
        """Make --state-dir (0700). OSError when it cannot be, or is shared (state_dir.py)."""
        if self.state is not None:
            self.state.prepare()

    async def load_stored(self, early: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """Adopt the certificate in --state-dir if it is usable (an X.509 worker checks it); else prefetch().
        `early`: workers `proxy run` started before its own imports (x509_client.spawn_early), used first."""
        if early:
            try:
                await self._ahead.start(len(early), SPARE_SECONDS, early)
            except X509WorkerError:
                pass  # started when needed instead (and that failure reported then)
        if self.state is not None and self.state.stored():
            try:
                if await self._load(await self._ahead.take()):
                    return
            except X509WorkerError as exc:  # not the certificate's fault: run() checks it again before any token
                self._stored_unchecked = True
                log.warning("stored certificate not checked yet: the X.509 worker failed",
                            state_dir=str(self.state.path), error=str(exc))
        await self.prefetch()

    async def _load(self, worker: Worker | None = None) -> bool:
        """Adopt the stored certificate if usable; True when it was. X509WorkerError: not checked (try later)."""
        assert self.state is not None
        # checked again in run(), the first bundle may be held by then: the issuer is named among its roots
        roots = self.bundle.roots_pem if self.bundle.held else self.state.roots()
        checked, why = await self.state.load(self.identity, self.clock(), roots, worker=worker)
        self._stored_unchecked = False
        if checked is not None:
            material = checked.material
            self._adopt(checked, roots, fresh=False)
            log.info("certificate loaded", spiffe_id=material.spiffe_id, serial=material.serial,
                     expires_in_s=round(material.not_after - self.clock()), state_dir=str(self.state.path))
            return True
        if why:
            log.warning("stored certificate not used", state_dir=str(self.state.path), reason=why)
        return False

    async def prefetch(self) -> None:
        """No certificate held: have two X.509 workers ahead (start those missing now), which load `cryptography`
        while the sidecar reaches the bus: one makes the first key and reads the first bundle (take_bundle), one
        checks the first certificate. Those not used by the end of the first try, or after SPARE_SECONDS, are
        closed."""
        if self.material is None:
            try:
                await self._ahead.start(2, SPARE_SECONDS)
            except X509WorkerError:
                pass  # started when needed instead (and that failure reported then)

    async def close(self) -> None:
        """Kill the workers started ahead that are still waiting (a sidecar that stops before its first try)."""
        await self._ahead.close()

    async def _take_key(self) -> KeyMade:
        """The key made with the first bundle, else a new one (each is used once)."""
        made, self._key = self._key, None
        return made if made is not None else await x509_client.make_key(self.identity, worker=await self._ahead.take())

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
                if material is None and self._stored_unchecked:
                    await self._load()  # X509WorkerError: again after the backoff
                    continue
                if material is None or material.expired(now):
                    await self._bootstrap()
                elif self.due > now:
                    await self._sleep(self.due - now)
                    continue
                elif self.bundle.held and not self.bundle.holds(self.issuer):
                    # no root in force signed it (a --state-dir certificate from a control plane made anew, or
                    # before a switch to a plug-in CA): the ca refuses it as a proof, so only a token can help
                    log.warning("the certificate is not under the trust bundle in force: asking for a new one with "
                                "the bootstrap token", serial=material.serial, spiffe_id=self.identity)
                    await self._bootstrap()
                else:
                    await self._renew(material)
                backoff.reset()
            except (BusError, CaRefused, MaterialError, X509WorkerError, ssl.SSLError, OSError) as exc:
                self.error = str(exc) or type(exc).__name__
                remaining = material.not_after - now if material is not None else None
                wait = backoff.next(remaining)
                self._log_failure(exc, material, now, wait)
                await self._sleep(wait)
            except IdentityFatal:
                raise
            except Exception as exc:  # a bug of ours: renewals must not stop in silence (the certificate would lapse)
                self.error = f"internal error: {type(exc).__name__}: {exc}"
                wait = backoff.next(material.not_after - now if material is not None else None)
                log.exception("the identity loop failed (a bug): trying again", retry_in_s=round(wait, 1),
                              spiffe_id=self.identity)
                await self._sleep(wait)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _log_failure(self, exc: Exception, material: Material | None, now: float, wait: float) -> None:
        kind = "refused" if isinstance(exc, (CaRefused, MaterialError)) else \
            "could not be asked (the X.509 worker failed)" if isinstance(exc, X509WorkerError) else "unreachable"
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
        minted = False
        try:
            token, minted = await bootstrap_token(self.config, first)
            checker = await self._ahead.take()  # started ahead, or now: Python's start overlaps the key and the signing
            try:
                made = await self._take_key()
                reply = await ca_client.sign_with_token(self.bus, made.csr_pem, token, self.config.ttl_seconds)
                material = await self._take_issued(made.key_pem, reply, checker)
            finally:
                await checker.close()
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
        finally:
            await self._ahead.close()  # a start-up thing: none outlives the first try
        log.info("certificate issued", spiffe_id=material.spiffe_id, serial=material.serial,
                 expires_in_s=round(material.not_after - self.clock()), minted_token=minted)

    # --- renewal ---

    async def _renew(self, current: Material) -> None:
        assert self.bus is not None
        checker = await Worker.start()  # started now: Python's start overlaps the key and the ca's signing
        try:
            made = await x509_client.make_key(current.spiffe_id, proof_key_pem=current.key_pem)  # a new key each time
            reply = await ca_client.renew(self.bus, current, made.csr_pem, made.proof_signature,
                                          self.config.ttl_seconds)
            material = await self._take_issued(made.key_pem, reply, checker)
        finally:
            await checker.close()
        self.renewals += 1
        log.info("certificate renewed", spiffe_id=material.spiffe_id, serial=material.serial,
                 expires_in_s=round(material.not_after - self.clock()))

    async def _take_issued(self, key_pem: str, reply: SignReply, checker: Worker) -> Material:
        """Check the ca's chain against our key and identity (in `checker`), and hold it. MaterialError."""
        async with self._lock:
            roots = self.bundle.roots_pem if self.bundle.held else reply.roots_pem
            checked = await x509_client.check_chain(key_pem, reply.cert_chain_pem, self.identity, roots,
                                                    worker=checker)
            self._adopt(checked, reply.roots_pem)
        return checked.material

    def _adopt(self, checked: Checked, roots_pem: list[str], fresh: bool = True) -> None:
        """Hold the checked material; fresh: just received from the ca (saved to --state-dir), else loaded from
        it. `roots_pem`: the roots named with it (used until a versioned bundle is held)."""
        material = checked.material
        self.material = material
        self.issuer = checked.issuer
        self.ever_held = True
        self.error = ""
        # a fresh certificate's life counts from now: the ca backdates notBefore (schedule.py)
        start = max(material.not_before, self.clock()) if fresh else material.not_before
        self.due = renew_at(start, material.not_after, self.config.grace_ratio, self.config.grace_jitter)
        if roots_pem and not self.bundle.held:
            self.roots_unversioned, self.roots_unversioned_read = list(roots_pem), list(checked.roots)
        self._rebuild()
        if fresh and self.state is not None:
            try:
                self.state.save(material, self.roots())
            except OSError as exc:  # we keep serving from memory; a restart will need a token
                log.error("cannot save the certificate", state_dir=str(self.state.path), error=str(exc))


__all__ = ["IdentityAgent", "IdentityConfig", "IdentityFatal"]

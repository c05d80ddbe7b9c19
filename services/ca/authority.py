"""Who signs, kept in step across ca replicas: the CaState in etcd (/isthmus/ca/bundle, certificates only),
the keys on this machine's disk (material.py) and, with the operator's KEK, the signing key sealed in etcd
(sealed.py) for replicas on other machines.

    keeper = Keeper(store, material, config, trust_domain, log, kek=None)
    await keeper.start()            adopt the state in etcd, or make the first root / take the plug-in CA
    keeper.authority, keeper.state  what signs now, and the bundle
    await keeper.rotate(now)        a new root (RotateRefused with a plug-in CA) -> (new state, old root)
    await keeper.record(authority, not_after, ttl)   durably raise that root's latest_not_after
    await keeper.retire_due(now)    drop rotated-out roots whose certificates all expired -> new state | None
    await keeper.follow(on_change)  reload whenever another replica changes the state (runs until cancelled)

Every change is a compare-and-swap on the key's revision: two replicas rotating at once make one rotation.
With a KEK, a signing key is sealed into etcd before the state naming it is written, so a replica that
sees the state can always open its key; a replica finds the signer's key on its disk, in the plug-in
files, or (with the KEK) sealed in etcd, kept in memory only.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509

from proto.ca import CaRoot, CaState
from runtime.bus import decode, encode
from runtime.plugin_ca import load_plugin_ca
from runtime.store import Store, StoreError
from services.ca import bundle
from services.ca.config import CaConfig
from services.ca import sealed
from services.ca.material import Material, fingerprint, new_root
from services.ca.signer import Authority, pem

STATE_KEY = "/isthmus/ca/bundle"
LEGACY_ROOT_KEY = "/isthmus/ca/root"  # before issue 10 the root KEY sat here in the clear
CAS_ATTEMPTS = 50


class AuthorityError(Exception):
    """The ca cannot sign with what it has (its key is on another machine, the files are damaged)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Keeper:
    def __init__(self, store: Store, material: Material, config: CaConfig, trust_domain: str, log: Any,
                 kek: bytes | None = None, previous_kek: bytes | None = None) -> None:
        self.store, self.material, self.config = store, material, config
        self.trust_domain = trust_domain
        self.log = log
        self.kek = kek  # the operator's key-encryption key (runtime/kek.py); never logged
        self.previous_kek = previous_kek  # during a KEK rotation: what etcd's keys may still be sealed with
        self._unsealed: dict[str, Authority] = {}  # signing keys opened from etcd, by fingerprint
        self.state: CaState
        self.authority: Authority
        self.roots: list[x509.Certificate] = []
        self._revision = 0

    async def _read(self) -> tuple[CaState | None, int]:
        entry = await self.store.get(STATE_KEY)
        if entry is None:
            return None, 0
        return decode(entry.value, CaState), entry.mod_revision

    async def start(self) -> None:
        """AuthorityError (one line) when this replica cannot sign: the key is elsewhere, or a wrong KEK."""
        if await self.store.delete(LEGACY_ROOT_KEY):
            self.log.warning("deleted the legacy root key from etcd", key=LEGACY_ROOT_KEY,
                             detail="it held the root's private key in the clear; that root is no longer trusted")
        try:
            if self.kek is not None and self.previous_kek is not None:
                count = await sealed.reseal(self.store, self.kek, self.previous_kek)
                self.log.info("sealed the keys in etcd again with the new KEK", keys=count)
            async with self.material.locked():  # replicas on this machine create material one at a time
                await self._start()
            if self.kek is not None:
                await self._ensure_sealed()
        except sealed.SealError as exc:
            raise AuthorityError(str(exc)) from None

    async def _start(self) -> None:
        for _ in range(CAS_ATTEMPTS):
            state, revision = await self._read()
            made: Authority | None = None
            if self.config.plugin:
                wanted, made = self._plugin_state(state)
            else:
                wanted, made = await self._own_state(state)
            if wanted is None:
                assert state is not None
                await self._adopt(state, revision)
                return
            if made is not None and self.kek is not None:  # sealed before any replica can see the state
                await sealed.store_key(self.store, self.kek, made)
                self.log.info("sealed the signing key into etcd with the KEK", signer=wanted.signer,
                              key=sealed.key_path(wanted.signer))
            if await self.store.put_if_revision(STATE_KEY, encode(wanted), revision):
                self.log.info("trust bundle written", version=wanted.version, signer=wanted.signer,
                              plugin=wanted.plugin, roots=len(wanted.roots))
                state, revision = await self._read()
                assert state is not None
                await self._adopt(state, revision)
                return
            if made is not None and self.kek is not None and not wanted.plugin:
                await sealed.drop_key(self.store, wanted.signer)  # another replica's root won: ours is unused
        raise AuthorityError("the trust bundle in etcd keeps changing under the ca; is another ca misbehaving?")

    async def _ensure_sealed(self) -> None:
        """With a KEK: the signing key this replica holds is sealed in etcd (sealed now if it is not), and
        what etcd holds opens with this KEK (SealError otherwise: replicas must share one KEK)."""
        assert self.kek is not None
        fp = self.state.signer
        if fp in self._unsealed:
            return  # opened from etcd: already checked
        roots = {r.fingerprint for r in self.state.roots}
        if await sealed.load_key(self.store, self.kek, fp, roots) is None:
            await sealed.store_key(self.store, self.kek, self.authority)
            self.log.info("sealed the signing key into etcd with the KEK", signer=fp, key=sealed.key_path(fp))

    def _plugin_state(self, state: CaState | None) -> tuple[CaState | None, Authority | None]:
        """With a plug-in CA: (None, None) when etcd already names it, else the state that does and the
        plug-in Authority (to seal)."""
        plugin = load_plugin_ca(self.config.plugin_cert, self.config.plugin_key, self.config.plugin_root,
                                self.config.plugin_chain)
        fp = fingerprint(plugin.cert)
        if state is not None and state.plugin and state.signer == fp and state.trust_domain == self.trust_domain:
            return None, None
        if state is not None:
            self.log.warning("the trust bundle changes to the plug-in CA's root; certificates of the old bundle "
                             "are no longer trusted", old_signer=state.signer, new_signer=fp)
        root = CaRoot(fingerprint=fingerprint(plugin.root), cert_pem=pem(plugin.root))
        made = Authority(plugin.cert, plugin.key, tuple(plugin.intermediates), plugin.root)
        return CaState(trust_domain=self.trust_domain, roots=[root], signer=fp,
                       version=(state.version + 1) if state else 1, plugin=True), made

    async def _own_state(self, state: CaState | None) -> tuple[CaState | None, Authority | None]:
        """Self-signed: (None, None) when this replica can get etcd's signing key (its disk; with the KEK,
        etcd: a plug-in CA sealed there is joined, not replaced), else a new root's state and Authority."""
        if state is not None and state.trust_domain == self.trust_domain:
            if await self._find(state) is not None:
                return None, None
            if not state.plugin and any(r.fingerprint == state.signer for r in state.roots):
                raise AuthorityError(self._keyless(state))
        if state is not None:
            self.log.warning("making a new mesh root; certificates of the old bundle are no longer trusted",
                             old_signer=state.signer, old_plugin=state.plugin, old_trust_domain=state.trust_domain)
        cert, key = new_root(self.trust_domain, _now())
        fp = self.material.save(cert, key)
        self.log.info("made a new mesh root", fingerprint=fp, dir=str(self.material.dir))
        return CaState(trust_domain=self.trust_domain, roots=[CaRoot(fingerprint=fp, cert_pem=pem(cert))], signer=fp,
                       version=(state.version + 1) if state else 1), Authority(cert, key, (), cert)

    def _keyless(self, state: CaState) -> str:
        """Why this replica has no key for etcd's signer, and what to pass (one line)."""
        where = f"etcd's trust bundle signs with root {state.signer[:16]}, whose key is not in {self.material.dir}"
        if self.kek is None:
            return (f"{where} and this ca has no KEK: pass the KEK file the other ca replicas use "
                    "(ISTHMUS_CA_KEK_FILE, python -m services.ca --ca-kek-file, isthmus up --ca-kek-file) to load "
                    "it sealed from etcd, or run the ca where that state directory is")
        return (f"{where} nor sealed in etcd (the ca that made it runs without a KEK): restart that ca with the "
                "KEK file so it seals its key, or copy its state directory (mode 0700) to this machine")

    async def _find(self, state: CaState) -> Authority | None:
        """The Authority signing as state.signer: the current one, the plug-in files, this machine's disk,
        or (with the KEK) the key sealed in etcd; None when none has it. SealError: a wrong KEK."""
        if self._revision and self.state.signer == state.signer:
            return self.authority
        if state.plugin and self.config.plugin:
            plugin = load_plugin_ca(self.config.plugin_cert, self.config.plugin_key, self.config.plugin_root,
                                    self.config.plugin_chain)
            if fingerprint(plugin.cert) == state.signer:
                return Authority(plugin.cert, plugin.key, tuple(plugin.intermediates), plugin.root)
        loaded = None if state.plugin else self.material.load(state.signer)
        if loaded is not None:
            return Authority(loaded[0], loaded[1], (), loaded[0])
        if state.signer in self._unsealed:
            return self._unsealed[state.signer]
        if self.kek is None:
            return None
        found = await sealed.load_key(self.store, self.kek, state.signer, {r.fingerprint for r in state.roots})
        if found is not None:
            self._unsealed[state.signer] = found
            self.log.info("loaded the signing key sealed in etcd", signer=state.signer, plugin=state.plugin)
        return found

    async def _adopt(self, state: CaState, revision: int) -> None:
        """Make `state` the one this replica signs and answers with. AuthorityError, SealError."""
        if revision and revision <= self._revision:
            return
        authority = await self._find(state)
        if authority is None:
            raise AuthorityError(self._keyless(state) if not state.plugin else
                                 f"the signing plug-in CA {state.signer[:16]} is not this ca's --plugin-ca-cert "
                                 "and not sealed in etcd")
        self.roots = [x509.load_pem_x509_certificate(r.cert_pem.encode()) for r in state.roots]
        keep = {state.signer, *(r.fingerprint for r in state.roots)}
        self._unsealed = {fp: a for fp, a in self._unsealed.items() if fp in keep}
        self.state, self.authority, self._revision = state, authority, revision

    async def _update(self, change: Callable[[CaState], CaState | None]) -> CaState | None:
        """Apply change() to the current state with compare-and-swap; the new state, or None if no change."""
        for _ in range(CAS_ATTEMPTS):
            state, revision = await self._read()
            if state is None:
                raise AuthorityError(f"{STATE_KEY} vanished from etcd; restart the ca to write it again")
            wanted = change(state)
            if wanted is None:
                await self._adopt(state, revision)
                return None
            if await self.store.put_if_revision(STATE_KEY, encode(wanted), revision):
                new, new_revision = await self._read()
                if new is not None:
                    await self._adopt(new, new_revision)
                return wanted
        raise AuthorityError("the trust bundle in etcd keeps changing; try again")

    async def rotate(self, now: float) -> tuple[CaState, CaRoot]:
        """A new root signs from now on; (the new state, the root it replaced). bundle.RotateRefused."""
        if self.config.plugin or self.state.plugin:
            bundle.rotated(self.state, "", "", now)  # raises the plug-in refusal
        async with self.material.locked():
            cert, key = new_root(self.trust_domain, _now())
            fp = self.material.save(cert, key)
            if self.kek is not None:  # before the state names it: the other replicas follow the state
                await sealed.store_key(self.store, self.kek, Authority(cert, key, (), cert))
                self.log.info("sealed the signing key into etcd with the KEK", signer=fp, key=sealed.key_path(fp))
            old: list[CaRoot] = []

            def change(state: CaState) -> CaState:
                old[:] = [bundle.signing_root(state)]
                return bundle.rotated(state, pem(cert), fp, now)

            try:
                state = await self._update(change)
            except (bundle.RotateRefused, AuthorityError):  # not written (three roots; the CAS kept losing): a key
                self.material.discard(fp)                     # no bundle trusts must not stay (an etcd error may
                raise                                         # have written it, so that key is kept)
        assert state is not None
        return state, old[0]

    async def record(self, authority: Authority, not_after: float, ttl: int) -> None:
        """Before a certificate `authority` signed is handed out: its root's latest_not_after covers it, in
        etcd (the root it was signed under, even if a rotation happened meanwhile)."""
        root_fp = fingerprint(authority.root)
        known = next((r for r in self.state.roots if r.fingerprint == root_fp), None)
        if known is not None and known.latest_not_after >= not_after:
            return  # already covered (the common case: one etcd write per `slack` at most)
        slack = min(3600.0, float(ttl))
        await self._update(lambda state: bundle.signed(state, root_fp, not_after, slack))

    async def retire_due(self, now: float) -> CaState | None:
        """Drop retired roots from the bundle, and their sealed keys from etcd."""
        before: set[str] = set()

        def change(state: CaState) -> CaState | None:
            before.update(r.fingerprint for r in state.roots)
            return bundle.retire(state, now)

        state = await self._update(change)
        if state is not None:
            for fp in before - {r.fingerprint for r in state.roots} - {state.signer}:
                await sealed.drop_key(self.store, fp)
        return state

    async def follow(self, on_change: Callable[[CaState], Awaitable[None]]) -> None:
        """Watch etcd for changes by other replicas; re-list after a broken watch."""
        while True:
            try:
                state, revision = await self._read()
                if state is not None and revision > self._revision:
                    before = self.state.version
                    await self._adopt(state, revision)
                    if state.version != before:
                        await on_change(state)
                async for change in self.store.watch(STATE_KEY, revision + 1):
                    if change.deleted:
                        continue
                    state = decode(change.entry.value, CaState)
                    before = self.state.version
                    await self._adopt(state, change.entry.mod_revision)
                    if state.version != before:
                        await on_change(state)
            except asyncio.CancelledError:
                raise
            except (StoreError, AuthorityError, sealed.SealError, ValueError) as exc:
                self.log.warning("following the trust bundle in etcd failed; retrying", error=str(exc)[:300])
                await asyncio.sleep(1.0)

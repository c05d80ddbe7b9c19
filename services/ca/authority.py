"""Who signs, kept in step across ca replicas: the CaState in etcd (/isthmus/ca/bundle, certificates only)
and the keys on this machine's disk (material.py).

    keeper = Keeper(store, material, config, trust_domain, log)
    await keeper.start()            adopt the state in etcd, or make the first root / take the plug-in CA
    keeper.authority, keeper.state  what signs now, and the bundle
    await keeper.rotate(now)        a new root (RotateRefused with a plug-in CA) -> (new state, old root)
    await keeper.record(authority, not_after, ttl)   durably raise that root's latest_not_after
    await keeper.retire_due(now)    drop rotated-out roots whose certificates all expired -> new state | None
    await keeper.follow(on_change)  reload whenever another replica changes the state (runs until cancelled)

Every change is a compare-and-swap on the key's revision: two replicas rotating at once make one rotation.
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
    def __init__(self, store: Store, material: Material, config: CaConfig, trust_domain: str, log: Any) -> None:
        self.store, self.material, self.config = store, material, config
        self.trust_domain = trust_domain
        self.log = log
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
        if await self.store.delete(LEGACY_ROOT_KEY):
            self.log.warning("deleted the legacy root key from etcd", key=LEGACY_ROOT_KEY,
                             detail="it held the root's private key in the clear; that root is no longer trusted")
        async with self.material.locked():  # replicas on this machine create material one at a time
            for _ in range(CAS_ATTEMPTS):
                state, revision = await self._read()
                wanted = self._plugin_state(state) if self.config.plugin else self._own_state(state)
                if wanted is None:
                    assert state is not None
                    self._adopt(state, revision)
                    return
                if await self.store.put_if_revision(STATE_KEY, encode(wanted), revision):
                    self.log.info("trust bundle written", version=wanted.version, signer=wanted.signer,
                                  plugin=wanted.plugin, roots=len(wanted.roots))
                    state, revision = await self._read()
                    assert state is not None
                    self._adopt(state, revision)
                    return
        raise AuthorityError("the trust bundle in etcd keeps changing under the ca; is another ca misbehaving?")

    def _plugin_state(self, state: CaState | None) -> CaState | None:
        """With a plug-in CA: None when etcd already names it, else the state that does."""
        plugin = load_plugin_ca(self.config.plugin_cert, self.config.plugin_key, self.config.plugin_root,
                                self.config.plugin_chain)
        fp = fingerprint(plugin.cert)
        if state is not None and state.plugin and state.signer == fp and state.trust_domain == self.trust_domain:
            return None
        if state is not None:
            self.log.warning("the trust bundle changes to the plug-in CA's root; certificates of the old bundle "
                             "are no longer trusted", old_signer=state.signer, new_signer=fp)
        root = CaRoot(fingerprint=fingerprint(plugin.root), cert_pem=pem(plugin.root))
        return CaState(trust_domain=self.trust_domain, roots=[root], signer=fp,
                       version=(state.version + 1) if state else 1, plugin=True)

    def _own_state(self, state: CaState | None) -> CaState | None:
        """Self-signed: None when etcd's signer is a root whose key this machine holds, else a new root's state."""
        if state is not None and not state.plugin and state.trust_domain == self.trust_domain:
            if self.material.load(state.signer) is not None:
                return None
            if any(r.fingerprint == state.signer for r in state.roots):
                raise AuthorityError(f"etcd's trust bundle signs with root {state.signer[:16]}, whose key is not in "
                                     f"{self.material.dir}: run the ca where its state directory is, or copy "
                                     "that directory (mode 0700) to this machine")
        if state is not None:
            self.log.warning("making a new mesh root; certificates of the old bundle are no longer trusted",
                             old_signer=state.signer, old_plugin=state.plugin, old_trust_domain=state.trust_domain)
        cert, key = new_root(self.trust_domain, _now())
        fp = self.material.save(cert, key)
        self.log.info("made a new mesh root", fingerprint=fp, dir=str(self.material.dir))
        return CaState(trust_domain=self.trust_domain, roots=[CaRoot(fingerprint=fp, cert_pem=pem(cert))], signer=fp,
                       version=(state.version + 1) if state else 1)

    def _adopt(self, state: CaState, revision: int) -> None:
        """Make `state` the one this replica signs and answers with."""
        if revision and revision <= self._revision:
            return
        if self.config.plugin and state.plugin:
            plugin = load_plugin_ca(self.config.plugin_cert, self.config.plugin_key, self.config.plugin_root,
                                    self.config.plugin_chain)
            authority = Authority(plugin.cert, plugin.key, tuple(plugin.intermediates), plugin.root)
        else:
            loaded = self.material.load(state.signer)
            if loaded is None:
                raise AuthorityError(f"the signing root {state.signer[:16]} has no key in {self.material.dir}")
            cert, key = loaded
            authority = Authority(cert, key, (), cert)
        self.roots = [x509.load_pem_x509_certificate(r.cert_pem.encode()) for r in state.roots]
        self.state, self.authority, self._revision = state, authority, revision

    async def _update(self, change: Callable[[CaState], CaState | None]) -> CaState | None:
        """Apply change() to the current state with compare-and-swap; the new state, or None if no change."""
        for _ in range(CAS_ATTEMPTS):
            state, revision = await self._read()
            if state is None:
                raise AuthorityError(f"{STATE_KEY} vanished from etcd; restart the ca to write it again")
            wanted = change(state)
            if wanted is None:
                self._adopt(state, revision)
                return None
            if await self.store.put_if_revision(STATE_KEY, encode(wanted), revision):
                new, new_revision = await self._read()
                if new is not None:
                    self._adopt(new, new_revision)
                return wanted
        raise AuthorityError("the trust bundle in etcd keeps changing; try again")

    async def rotate(self, now: float) -> tuple[CaState, CaRoot]:
        """A new root signs from now on; (the new state, the root it replaced). bundle.RotateRefused."""
        if self.config.plugin or self.state.plugin:
            bundle.rotated(self.state, "", "", now)  # raises the plug-in refusal
        async with self.material.locked():
            cert, key = new_root(self.trust_domain, _now())
            fp = self.material.save(cert, key)
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
        return await self._update(lambda state: bundle.retire(state, now))

    async def follow(self, on_change: Callable[[CaState], Awaitable[None]]) -> None:
        """Watch etcd for changes by other replicas; re-list after a broken watch."""
        while True:
            try:
                state, revision = await self._read()
                if state is not None and revision > self._revision:
                    before = self.state.version
                    self._adopt(state, revision)
                    if state.version != before:
                        await on_change(state)
                async for change in self.store.watch(STATE_KEY, revision + 1):
                    if change.deleted:
                        continue
                    state = decode(change.entry.value, CaState)
                    before = self.state.version
                    self._adopt(state, change.entry.mod_revision)
                    if state.version != before:
                        await on_change(state)
            except asyncio.CancelledError:
                raise
            except (StoreError, AuthorityError, ValueError) as exc:
                self.log.warning("following the trust bundle in etcd failed; retrying", error=str(exc)[:300])
                await asyncio.sleep(1.0)

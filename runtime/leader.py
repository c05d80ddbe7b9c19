"""Leader election through an etcd lease: the holder of /isthmus/leader/<service> is the leader.

Work that must happen once (publishing a compiled push, publishing registry events) runs only on
the leader. When the leader dies its lease expires and another replica takes over within the TTL.
A leader also times its own lease: `is_leader` turns False once a TTL has passed since the last
keep-alive etcd granted (counted from when it was sent), so a process frozen (SIGSTOP, a long GC or
swap) past its lease stops acting the moment it runs again, before its next keep-alive finds the
lease gone; it then stands down (on_deposed) and campaigns anew.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from runtime.log import get_logger
from runtime.store import LEADER_PREFIX, Store, StoreError

log = get_logger("leader")


class LeaderElection:
    def __init__(
        self,
        store: Store,
        service: str,
        instance: str,
        ttl: int = 5,
        on_elected: Callable[[], Awaitable[None]] | None = None,
        on_deposed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.key = f"{LEADER_PREFIX}{service}"
        self.instance = instance
        self.ttl = ttl
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self._leading = False  # we took the key and were not deposed since
        self._valid_until = 0.0  # monotonic time by which our lease may have expired
        self._lease = 0

    @property
    def is_leader(self) -> bool:
        """True while we hold the key and, by our own clock, our lease cannot have expired yet."""
        return self._leading and time.monotonic() < self._valid_until

    async def run(self) -> None:
        """Campaign forever: try to take the key, keep the lease alive while holding it."""
        while True:
            try:
                if self._leading and not self.is_leader:  # frozen past our lease: stand down first
                    log.warning("leader lease lapsed by our clock", key=self.key)
                    await self._set(False)
                    await self.store.revoke(self._lease)  # frees the key now if etcd still has it
                    self._lease = 0
                if not self._leading:
                    sent = time.monotonic()
                    self._lease = await self.store.grant(self.ttl)
                    if await self.store.create_if_absent(self.key, self.instance.encode(), self._lease):
                        self._valid_until = sent + self.ttl
                        await self._set(True)
                    else:
                        await self.store.revoke(self._lease)
                        self._lease = 0
                else:
                    sent = time.monotonic()
                    ttl = await self.store.refresh(self._lease)
                    if ttl == 0:
                        await self._set(False)
                    else:
                        self._valid_until = sent + ttl
            except StoreError as exc:
                log.warning("leader election", error=str(exc))
                if self._leading:
                    await self._set(False)
            await asyncio.sleep(self.ttl / 3)

    async def resign(self) -> None:
        if self._lease:
            await self.store.revoke(self._lease)
        if self._leading:
            await self._set(False)

    async def _set(self, leader: bool) -> None:
        self._leading = leader
        log.info("leadership", leader=leader, key=self.key)
        callback = self.on_elected if leader else self.on_deposed
        if callback:
            await callback()

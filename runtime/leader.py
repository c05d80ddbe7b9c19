"""Leader election through an etcd lease: the holder of /isthmus/leader/<service> is the leader.

Work that must happen once (publishing a compiled push, publishing registry events) runs only on
the leader. When the leader dies its lease expires and another replica takes over within the TTL.
"""

from __future__ import annotations

import asyncio
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
        self.is_leader = False
        self._lease = 0

    async def run(self) -> None:
        """Campaign forever: try to take the key, keep the lease alive while holding it."""
        while True:
            try:
                if not self.is_leader:
                    self._lease = await self.store.grant(self.ttl)
                    if await self.store.create_if_absent(self.key, self.instance.encode(), self._lease):
                        await self._set(True)
                    else:
                        await self.store.revoke(self._lease)
                        self._lease = 0
                elif await self.store.refresh(self._lease) == 0:
                    await self._set(False)
            except StoreError as exc:
                log.warning("leader election", error=str(exc))
                if self.is_leader:
                    await self._set(False)
            await asyncio.sleep(self.ttl / 3)

    async def resign(self) -> None:
        if self._lease:
            await self.store.revoke(self._lease)
        if self.is_leader:
            await self._set(False)

    async def _set(self, leader: bool) -> None:
        self.is_leader = leader
        log.info("leadership", leader=leader, key=self.key)
        callback = self.on_elected if leader else self.on_deposed
        if callback:
            await callback()

"""The real etcd client with a gate on its watches, for tests of a reader whose watch lags the store (as one does
while it reconnects, or while its etcd member is behind): while `flowing` is clear, events are held back, none
lost; `yielded` is every event a watch passed on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from runtime.store import Change, Store


class LaggingStore(Store):
    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        super().__init__(client)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.yielded: list[Change] = []

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Change]:
        async for change in super().watch(prefix, start_revision):
            await self.flowing.wait()
            self.yielded.append(change)
            yield change

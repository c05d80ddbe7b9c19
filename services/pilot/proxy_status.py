"""Proxy sync status: every ACK/NACK is kept in memory and flushed to etcd in batches, so a push to
a thousand proxies costs one transaction per flush, not a thousand writes."""

from __future__ import annotations

import asyncio
import time

from proto.xds import Ack, ProxyStatus
from runtime.bus import decode, encode
from runtime.log import get_logger
from runtime.store import STATUS_PREFIX, Store, StoreError

log = get_logger("pilot.status")
TXN_OPS = 100


class ProxyStatusRecorder:
    def __init__(self, store: Store, flush_interval: float = 1.0) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.dirty: dict[str, ProxyStatus] = {}

    async def on_ack(self, data: bytes) -> None:
        ack = decode(data, Ack)
        if not ack.ok:
            log.warning("proxy rejected config", proxy=ack.proxy_id, seq=ack.seq, error=ack.error)
        self.dirty[ack.proxy_id] = ProxyStatus(
            proxy_id=ack.proxy_id, service=ack.service, namespace=ack.namespace, epoch=ack.epoch,
            seq=ack.seq, version=ack.version, ok=ack.ok, error=ack.error, updated_at=time.time())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self) -> None:
        if not self.dirty:
            return
        batch, self.dirty = self.dirty, {}
        items = [(f"{STATUS_PREFIX}{pid}", encode(s)) for pid, s in batch.items()]
        try:
            for start in range(0, len(items), TXN_OPS):  # etcd caps operations per transaction
                await self.store.commit(dict(items[start:start + TXN_OPS]), [])
        except StoreError as exc:
            log.warning("status flush failed", error=str(exc))
            batch.update(self.dirty)
            self.dirty = batch

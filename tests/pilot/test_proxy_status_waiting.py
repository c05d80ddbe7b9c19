"""ACKs of unregistered proxies wait in memory, at most MAX_WAITING (pure logic: no store is touched)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.pilot.proxy_status import MAX_WAITING, ProxyStatusRecorder


def ack(proxy_id: str, seq: int = 1) -> bytes:
    return json.dumps({"proxy_id": proxy_id, "epoch": "e", "seq": seq, "version": 1, "service": "s",
                       "namespace": "n"}).encode()


def test_at_most_max_waiting_acks_of_unregistered_proxies_are_held() -> None:
    store: Any = None  # on_ack of an unregistered proxy never touches the store
    recorder = ProxyStatusRecorder(store, registered=lambda proxy_id: False)

    async def body() -> None:
        for i in range(MAX_WAITING):  # up to the bound: all held
            await recorder.on_ack(ack(f"p-{i}"))
        assert len(recorder.waiting) == MAX_WAITING and recorder.refused_waiting == 0
        await recorder.on_ack(ack("p-over"))  # one over: dropped and counted
        assert len(recorder.waiting) == MAX_WAITING and "p-over" not in recorder.waiting
        assert recorder.refused_waiting == 1
        await recorder.on_ack(ack("p-0", seq=2))  # one already waiting is updated, not refused
        assert recorder.waiting["p-0"].seq == 2 and recorder.refused_waiting == 1
        assert not recorder.dirty

    asyncio.run(body())

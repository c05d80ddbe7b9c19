"""One request, every answer: for subjects every replica answers without a queue group (isthmus.health.<service>,
isthmus.admin.log.<service>), the CLI collects replies for a window instead of taking the first."""

from __future__ import annotations

import asyncio
import time
from typing import Any

MAX_REPLIES = 256  # replies kept from one request: far more replicas than a control plane runs


async def gather(bus: Any, subject: str, payload: bytes, window: float) -> list[bytes]:
    """Every reply that arrives within `window` seconds (at most MAX_REPLIES), on our own inbox."""
    from runtime.bus import DEADLINE_HEADER

    client = bus.client
    replies: list[bytes] = []
    inbox = client.new_inbox()

    async def collect(msg: Any) -> None:
        if not msg.data:  # nats-server's "no responders" status (503, no payload): nobody serves the subject
            return
        if len(replies) < MAX_REPLIES:
            replies.append(msg.data)

    sub = await client.subscribe(inbox, cb=collect)
    try:
        bus.check_size(subject, payload)
        deadline = str(int((time.time() + window) * 1000))
        await client.publish(subject, payload, reply=inbox, headers={DEADLINE_HEADER: deadline})
        await client.flush()
        await asyncio.sleep(window)
    finally:
        await sub.unsubscribe()
    return replies

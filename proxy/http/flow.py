"""Backpressure between the two sides of a proxied exchange.

When one side's transport reports its write buffer over the high-water mark (asyncio calls the
protocol's pause_writing), we stop reading the *other* side until it drains. A transport may be paused
for several reasons at once (a queued pipelined request and a full upstream, say), so the gate keeps a
bit per reason and only resumes reading when none is left. Shape after uvicorn's flow_control.py.
"""

from __future__ import annotations

import asyncio

# Why a transport's reading is paused; one bit each.
PIPELINE = 1  # client: a request is queued behind the one in flight, answer that first
PEER_FULL = 2  # the other side's write buffer is over its high-water mark
BUFFERING = 4  # client: body arriving while the upstream connection is still being opened


class ReadGate:
    __slots__ = ("_transport", "reasons")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        # The bits set now: a caller on the hot path checks `reasons` before calling resume or clear,
        # which then do nothing anyway when it is 0.
        self.reasons = 0

    @property
    def paused(self) -> bool:
        return self.reasons != 0

    def pause(self, reason: int) -> None:
        if not self.reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self.reasons |= reason

    def resume(self, reason: int) -> None:
        if self.reasons & reason:
            self.reasons &= ~reason
            if not self.reasons and not self._transport.is_closing():
                self._transport.resume_reading()

    def clear(self) -> None:
        """Read again whatever paused us (an upstream connection going back to the pool)."""
        if self.reasons:
            self.reasons = 0
            if not self._transport.is_closing():
                self._transport.resume_reading()

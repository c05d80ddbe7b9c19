"""The bytes of incomplete request heads one listener holds, across its connections.

    HeadBudget(limit).charge(conn, size) -> bool     False: over the budget (the caller answers 503 OM)
    HeadBudget.release(conn)                         the head completed or the connection went

Each connection's head is bounded (max_head_bytes, 60 KiB), but 10,000 connections each holding most of
one is ~600 MB. Envoy bounds that with its overload manager (stop_accepting_requests under memory
pressure: 503, response flag OM); Isthmus keeps one byte budget per listener instead
(Limits.max_pending_head_bytes, 32 MiB; `--max-pending-heads-mb`). Only heads that span reads are charged
(a head read whole in one read is never held), with the bytes read so far; the connection whose head would
take the total past the limit is answered 503 OM and closed, the others go on.
"""

from __future__ import annotations


class HeadBudget:
    __slots__ = ("limit", "held", "charges", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit or (1 << 62)  # 0: unlimited
        self.held = 0  # bytes charged, all connections
        self.charges: dict[object, int] = {}  # connection -> bytes charged to it
        self.refused = 0  # heads refused for the budget: a stat

    def charge(self, conn: object, size: int) -> bool:
        """Charge `conn`'s incomplete head at `size` bytes read so far; False (nothing charged) when that
        takes the listener past its limit."""
        old = self.charges.get(conn, 0)
        held = self.held - old + size
        if held > self.limit:
            self.refused += 1
            return False
        self.held = held
        self.charges[conn] = size
        return True

    def release(self, conn: object) -> None:
        self.held -= self.charges.pop(conn, 0)

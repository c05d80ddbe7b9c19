"""The sweep of proxies' bus credentials (etcd /isthmus/bus/creds/<id>): what may be deleted, and when.

A record is deleted when no connection can still hold it and keeping it tells nobody anything:
- revoked: SESSION_SECONDS after `revoked_at` (a connection let in just before the revocation lives at
  most that long on its user JWT, if the kick missed it); until then a reconnect hears "revoked";
- expired (issued with a ttl): SESSION_SECONDS after `expires` (the callout caps a JWT at `expires`);
- live, but its proxy has not connected for `idle` seconds (ISTHMUS_BUS_CREDS_IDLE, default 30 days):
  a proxy that is connected reconnects through the callout at least every SESSION_SECONDS, which
  refreshes `last_seen` (services/auth/creds.py), so only a proxy that is gone crosses the bound. One
  that comes back later is refused as unknown and joins again with a new token. Never seen: `created`
  counts instead.
Each pass reads the keys (not the values) and then at most SWEEP_BATCH records, resuming after the last
key it looked at, so the work per pass is bounded whatever the number of records. A delete is a
compare-and-swap on the revision it read: a record changed since (a refresh, a revocation) is left for
the next pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from proto.busauth import BusCredsRecord
from runtime.bus import decode
from runtime.store import Store
from services.auth.creds import PREFIX

SWEEP_BATCH = 256  # records read per pass
DAY = 86400
DEFAULT_IDLE = 30 * DAY
MIN_IDLE, MAX_IDLE = 3600, 3650 * DAY
DEFAULT_INTERVAL = 60.0
MIN_INTERVAL, MAX_INTERVAL = 0.1, 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY}


def due(record: BusCredsRecord, now: float, idle: float, session: float) -> str:
    """Why `record` may be deleted at `now` (Unix seconds): "revoked", "expired" or "idle"; "" to keep it.
    Each bound is inclusive of keeping: at exactly the bound the record stays, one second later it goes."""
    if record.revoked:
        return "revoked" if now > (record.revoked_at or record.created) + session else ""
    if record.expires:
        return "expired" if now > record.expires + session else ""
    return "idle" if now > max(record.last_seen, record.created) + idle else ""


def _number(name: str, text: str, low: float, high: float, units: bool) -> float:
    text = text.strip()
    scale = _UNITS.get(text[-1:], 0) if units else 0
    try:
        value = float(text[:-1] if scale else text) * (scale or 1)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # nan fails too
        unit = " (seconds, or a number with s, m, h or d: 30d)" if units else " (seconds)"
        raise ValueError(f"{name} is {text[:40]!r}: give {low:g} to {high:g} seconds{unit}")
    return value


@dataclass(frozen=True)
class SweepConfig:
    """ISTHMUS_BUS_CREDS_IDLE (default 30d, 1h to 3650d) and ISTHMUS_BUS_CREDS_SWEEP_INTERVAL (seconds
    between passes, default 60, 0.1 to 3600); docs/security.md "Settings"."""

    idle: float = DEFAULT_IDLE
    interval: float = DEFAULT_INTERVAL

    @classmethod
    def from_env(cls) -> "SweepConfig":
        env = os.environ
        return cls(idle=_number("ISTHMUS_BUS_CREDS_IDLE", env.get("ISTHMUS_BUS_CREDS_IDLE", "30d"),
                                MIN_IDLE, MAX_IDLE, True),
                   interval=_number("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL",
                                    env.get("ISTHMUS_BUS_CREDS_SWEEP_INTERVAL", str(DEFAULT_INTERVAL)),
                                    MIN_INTERVAL, MAX_INTERVAL, False))


class Sweeper:
    """One pass at a time over the records, SWEEP_BATCH at most, resuming where the last pass stopped."""

    def __init__(self, store: Store, idle: float, session: float, batch: int = SWEEP_BATCH) -> None:
        self.store, self.idle, self.session, self.batch = store, idle, session, batch
        self.cursor = ""  # the last key the previous pass looked at

    async def sweep(self, now: float) -> dict[str, str]:
        """One pass; {key: reason} of the records deleted."""
        keys = await self.store.keys(PREFIX)
        later = [k for k in keys if k > self.cursor]
        todo = (later + [k for k in keys if k <= self.cursor])[: self.batch]  # wrap around
        deleted: dict[str, str] = {}
        for key in todo:
            entry = await self.store.get(key)
            if entry is None:
                continue
            try:
                record = decode(entry.value, BusCredsRecord)
            except Exception:
                continue  # not ours to interpret; left for the operator
            reason = due(record, now, self.idle, self.session)
            if reason and await self.store.delete_if_revision(key, entry.mod_revision):
                deleted[key] = reason
        if todo:
            self.cursor = todo[-1]
        return deleted

"""Close every open bus connection of one user, now: nats-server's own system-account services.

nats-server (v2.10+, server/events.go) answers, for a user of its system account:
- `$SYS.REQ.SERVER.PING.CONNZ` with `{"user": U, "limit": N}`: every server replies (one reply per server
  in a cluster) `{"server": {"id": SID, ...}, "data": {"connections": [{"cid": N, ...}, ...]}}`, the open
  client connections that authenticated as U (the CONNECT user name; a callout user too);
- `$SYS.REQ.SERVER.<SID>.KICK` with `{"cid": N}`: that server closes the connection and replies
  `{"server": {...}}`, or `{"server": ..., "error": {"code": 500, "description": "no such client ..."}}`
  when it is already gone.
The auth service holds that user (proto/busauth.py AUTH_SYSTEM: only these two subjects). A kick that
fails (no system connection, the server does not answer) is reported, never raised: the revocation still
stands, and the connection ends within the session bound (SESSION_SECONDS) anyway.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from proto.subjects import SYS_CONNZ_PING, kick_subject

MAX_CONNECTIONS = 1024  # per user and server, per pass: a credential is meant for one sidecar
GATHER_SECONDS = 0.3  # after the first server's CONNZ reply, how long others (a cluster) may still answer
REPLY_TIMEOUT = 2.0  # seconds to wait for the first CONNZ reply and for each KICK reply


class KickFailed(Exception):
    """str(exc): why the open connections could not be closed now."""


class NatsLike(Protocol):  # the part of nats-py's Client used here
    def new_inbox(self) -> str: ...
    async def subscribe(self, subject: str, **kw: Any) -> Any: ...
    async def publish(self, subject: str, payload: bytes = b"", reply: str = "", **kw: Any) -> None: ...
    async def request(self, subject: str, payload: bytes = b"", timeout: float = 0.5, **kw: Any) -> Any: ...


async def connections_of(client: NatsLike, user: str, timeout: float = REPLY_TIMEOUT,
                         gather: float = GATHER_SECONDS) -> list[tuple[str, int]]:
    """(server id, client id) of every open connection of `user` that the servers report."""
    inbox = client.new_inbox()
    sub = await client.subscribe(inbox)
    found: list[tuple[str, int]] = []
    try:
        await client.publish(SYS_CONNZ_PING, json.dumps({"user": user, "limit": MAX_CONNECTIONS}).encode(),
                             reply=inbox)
        wait = timeout
        while True:
            try:
                msg = await sub.next_msg(timeout=wait)
            except Exception:  # nats-py's TimeoutError: no (more) servers answer
                if wait == timeout:
                    raise KickFailed(f"no nats-server answered {SYS_CONNZ_PING} within {timeout:g}s") from None
                break
            wait = gather
            try:
                reply = json.loads(msg.data)
                server = str(reply["server"]["id"])
                if reply.get("error"):
                    raise KickFailed(f"nats-server {server[:12]} refused CONNZ: {reply['error']}")
                found += [(server, int(c["cid"])) for c in (reply.get("data") or {}).get("connections") or ()]
            except (ValueError, KeyError, TypeError) as exc:
                raise KickFailed(f"unreadable CONNZ reply: {exc}") from None
    finally:
        try:
            await sub.unsubscribe()
        except Exception:  # the connection is going or gone: its subscriptions go with it
            pass
    return found


async def kick_user(client: NatsLike | None, user: str, timeout: float = REPLY_TIMEOUT) -> int:
    """Close every open connection of `user`; how many were closed. KickFailed when it cannot be done now."""
    if client is None:
        raise KickFailed("the auth service has no system-account connection (ISTHMUS_AUTH_SYSTEM_CONFIG)")
    closed = 0
    for server, cid in await connections_of(client, user, timeout):
        try:
            msg = await client.request(kick_subject(server), json.dumps({"cid": cid}).encode(), timeout=timeout)
            error = (json.loads(msg.data) or {}).get("error")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise KickFailed(f"kicking connection {cid} on nats-server {server[:12]}: {exc or type(exc).__name__}") from None
        if not error:
            closed += 1
        elif "no such client" not in str(error.get("description", "")):  # already gone: that is the goal
            raise KickFailed(f"nats-server {server[:12]} did not close connection {cid}: {error}")
    return closed

"""The auth service: answers nats-server's auth callout for every client that is not a static role, and
issues and revokes proxies' bus credentials.

nats-server (config written by `isthmus up`, isthmus/launch/natsauth.py) authenticates the static roles
itself (operator, registry, pilot, ca, telemetry, auth: users with permissions in its config, listed as
`auth_users` so they bypass the callout). Any other connection is sent to `$SYS.REQ.USER.AUTH`; we
answer with a user JWT carrying that connection's permissions (proto/busauth.py), signed by the account
nkey the server's `auth_callout.issuer` names, or with an error (the connection is refused):

- user `proxy.<id>` + password: a credential from `isthmus.bus.creds.issue` or a join; proxy permissions,
  its own inbox only. Valid for SESSION_SECONDS at most, then nats-server closes the connection and the
  client reconnects through the callout again: a revoked credential is out within that bound.
- token = a bootstrap token (`isthmus token create`) its holder was given: join permissions only, for
  JOIN_SECONDS (ask `isthmus.bus.join`, which answers credentials bound to the token's namespace and service
  account while the token could still pay for a signing, else the reason: expired, revoked, used up).
- anything else, anonymous included: refused, with an audit line (who, from where, why).

Revocation (`isthmus.bus.creds.revoke`, `isthmus proxy credentials revoke`) marks the record and closes
every open connection of that user at once, through a second connection as nats-server's system-account
user `auth-system` (services/auth/kick.py; client config ISTHMUS_AUTH_SYSTEM_CONFIG), and again
KICK_AGAIN seconds later for a connection whose callout was under way while we revoked. If the kick
fails, it is logged and the reply says so: the connection still ends within SESSION_SECONDS.
`isthmus.bus.creds.list` lists the records (never a secret); a sweep every ISTHMUS_BUS_CREDS_SWEEP_INTERVAL
seconds deletes revoked, expired and idle ones (services/auth/sweep.py).

The account seed is read from the file ISTHMUS_AUTH_SEED_FILE (mode 0600, written by `isthmus up`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from proto import subjects
from proto.busauth import (
    BusCredsInfo,
    BusCredsListReply,
    BusCredsListRequest,
    BusCredsRecord,
    BusCredsReply,
    BusCredsRequest,
    BusCredsRevokeReply,
    BusCredsRevokeRequest,
    BusJoinRequest,
    join_permissions,
    proxy_inbox_prefix,
    proxy_permissions,
)
from proto.ca import TokenRecord
from runtime import bus as busmod
from runtime.bus import decode, encode
from runtime.clientconfig import ConfigFileError, load
from runtime.service import ServiceProcess
from runtime.store import StoreError
from runtime import natsjwt
from services.auth.creds import USER_PREFIX, Credentials, Refused, token_digest
from services.auth.kick import KickFailed, kick_user
from services.auth.sweep import SweepConfig, Sweeper

SEED_ENV = "ISTHMUS_AUTH_SEED_FILE"
SYSTEM_CONFIG_ENV = "ISTHMUS_AUTH_SYSTEM_CONFIG"
SESSION_ENV = "ISTHMUS_AUTH_SESSION_SECONDS"


def _session_seconds() -> int:
    """The longest a proxy connection lives on one callout answer (revocation bound if a kick fails): 600 s,
    else ISTHMUS_AUTH_SESSION_SECONDS (10 to 86400; tests shorten it to see sessions end and resume)."""
    text = os.environ.get(SESSION_ENV, "").strip()
    if not text:
        return 600
    if not (text.isdigit() and 10 <= int(text) <= 86400):
        raise SystemExit(f"auth: {SESSION_ENV} is {text[:40]!r}: give whole seconds, 10 to 86400")
    return int(text)


SESSION_SECONDS = _session_seconds()
JOIN_SECONDS = 60  # a token-only connection: enough to ask for credentials
KICK_AGAIN = 3.0  # seconds: past nats-server's authorization timeout (2 s), a callout under way has finished


class AuthService(ServiceProcess):
    name: ClassVar[str] = "auth"

    async def start(self) -> None:
        seed_file = os.environ.get(SEED_ENV, "")
        if not seed_file:
            raise SystemExit(f"auth: {SEED_ENV} is not set (the account nkey seed file `isthmus up` writes)")
        self.seed = Path(seed_file).read_text().strip()
        self.creds = Credentials(self.store)
        try:
            self.sweep_config = SweepConfig.from_env()
        except ValueError as exc:
            raise SystemExit(f"auth: {exc}") from None
        self._kicks: set[asyncio.Task[None]] = set()  # second kicks under way (each ends after KICK_AGAIN)
        self.sweeper = Sweeper(self.store, self.sweep_config.idle, SESSION_SECONDS)
        self.system: Any = await self._system_connection(wait=10)
        q = subjects.QUEUE_AUTH
        # nats-server asks from its own system inbox (and only the server may publish on the callout subject)
        await self.bus.serve(subjects.AUTH_CALLOUT, self._callout, queue=q, concurrency=16,
                             reply_prefixes=("$SYS._INBOX.",))
        await self.bus.serve(subjects.BUS_CREDS_ISSUE, self._issue, queue=q)
        await self.bus.serve(subjects.BUS_CREDS_REVOKE, self._revoke, queue=q)
        await self.bus.serve(subjects.BUS_CREDS_LIST, self._list, queue=q)
        await self.bus.serve(subjects.BUS_JOIN, self._join, queue=q)
        self.spawn(self._sweep_loop())

    async def stop(self) -> None:
        for task in list(self._kicks):
            task.cancel()
        if self.system is not None:
            try:
                await asyncio.wait_for(self.system.close(), 2)
            except Exception:  # stopping: a close that fails or hangs leaves nothing to undo
                pass

    async def _system_connection(self, wait: float) -> Any:
        """The system-account connection that kicks revoked users (nats-py reconnects it by itself once
        made); None (logged) without one: a revocation tries again, and until then reaches open
        connections only at the session bound."""
        path = os.environ.get(SYSTEM_CONFIG_ENV, "")
        if not path:
            self.log.warning(f"no {SYSTEM_CONFIG_ENV}: a revoked proxy's open connection ends only within "
                             f"{SESSION_SECONDS}s")
            return None
        try:
            auth = load(path).nats
            system = await busmod.connect(self.settings.nats_url, f"auth-system-{self.settings.instance}", auth=auth,
                                          wait=wait)
        except (ConfigFileError, busmod.BusError, OSError) as exc:
            self.log.warning("no system-account connection: a revoked proxy's open connection ends only "
                             f"within {SESSION_SECONDS}s", error=str(exc)[:300])
            return None
        return system.client

    async def _callout(self, data: bytes) -> bytes | None:
        try:
            claims = natsjwt.decode_claims(data)
            request: dict[str, Any] = claims["nats"]
            user_nkey = str(request["user_nkey"])
            server_id = str(request["server_id"]["id"])
        except (natsjwt.JwtError, KeyError, TypeError) as exc:
            self.log.warning("auth callout: unreadable request", error=str(exc)[:200])
            return None  # no reply: the server times the connection out
        opts = request.get("connect_opts") or {}
        client = request.get("client_info") or {}
        user, password, token = str(opts.get("user") or ""), str(opts.get("pass") or ""), str(opts.get("auth_token") or "")
        now = time.time()
        try:
            if user.startswith("proxy."):
                record = await self.creds.check(user, password, now)
                name, perms = user, proxy_permissions(record.id, record.namespace, record.service_account)
                expires = min(record.expires or float("inf"), now + SESSION_SECONDS)
            elif token and not user:
                # Any token its holder was given (even expired, revoked or used up) may ask BUS_JOIN, which
                # answers with the reason, so `proxy run` can say exactly why; an unknown one is refused here.
                tok = await self.creds.known_token(token)
                name, perms = f"join.{tok.id}", join_permissions(token_digest(token))
                expires = now + JOIN_SECONDS
            else:
                raise Refused("no credentials" if not (user or token) else f"unknown user {user[:80]!r}")
        except Refused as exc:
            self.log.warning("bus connection refused", user=user[:80], host=client.get("host"), reason=str(exc))
            return natsjwt.authorization_response(user_nkey, server_id, self.seed, error=str(exc))
        jwt = natsjwt.user_jwt(user_nkey, name, perms, self.seed, expires)
        return natsjwt.authorization_response(user_nkey, server_id, self.seed, jwt=jwt)

    async def _issue(self, data: bytes) -> bytes:
        request = decode(data, BusCredsRequest)
        return await self._new(request.namespace, request.service_account, request.ttl_seconds, "operator", "operator")

    async def _join(self, data: bytes) -> bytes:
        request = decode(data, BusJoinRequest)
        try:
            tok = await self.creds.token(request.token, time.time())
        except Refused as exc:
            self.log.warning("join refused", reason=str(exc))
            return encode(BusCredsReply(ok=False, error=str(exc)))
        return await self._new(tok.namespace, tok.service_account, 0, f"token {tok.id}", "join", tok)

    async def _new(self, namespace: str, service_account: str, ttl: int, by: str, how: str,
                   token: TokenRecord | None = None) -> bytes:
        try:
            user, password, record = await self.creds.issue(namespace, service_account, ttl, time.time(), token,
                                                            how)
        except Refused as exc:
            self.log.warning("bus credential refused", namespace=namespace, service_account=service_account, by=by,
                             reason=str(exc))
            return encode(BusCredsReply(ok=False, error=str(exc)))
        self.log.info("bus credential issued", user=user, namespace=namespace, service_account=service_account,
                      by=by)
        return encode(BusCredsReply(ok=True, user=user, password=password, inbox_prefix=proxy_inbox_prefix(record.id),
                                    namespace=namespace, service_account=service_account, expires=record.expires))

    async def _revoke(self, data: bytes) -> bytes:
        request = decode(data, BusCredsRevokeRequest)
        now = time.time()
        try:
            record = await self.creds.revoke(request.user, now)
        except Refused as exc:
            return encode(BusCredsRevokeReply(ok=False, error=str(exc)))
        user = USER_PREFIX + record.id
        self.log.info("bus credential revoked", user=user, namespace=record.namespace,
                      service_account=record.service_account)
        disconnected, error = await self._kick(user)
        again = asyncio.ensure_future(self._kick_again(user))  # not spawn(): that list is never pruned
        self._kicks.add(again)
        again.add_done_callback(self._kicks.discard)
        return encode(BusCredsRevokeReply(ok=True, user=user, disconnected=disconnected, kick_error=error,
                                          session_seconds=SESSION_SECONDS,
                                          already_revoked_at=record.revoked_at if record.revoked_at != now else 0.0))

    async def _kick(self, user: str) -> tuple[int, str]:
        """(connections closed, why not: '' when done)."""
        if self.system is None:
            self.system = await self._system_connection(wait=2)
        try:
            closed = await kick_user(self.system, user)
        except KickFailed as exc:
            self.log.warning("could not close a revoked user's connections now; they end within the session bound",
                             user=user, session_seconds=SESSION_SECONDS, error=str(exc)[:300])
            return 0, str(exc)
        if closed:
            self.log.info("closed a revoked user's connections", user=user, connections=closed)
        return closed, ""

    async def _kick_again(self, user: str) -> None:
        await asyncio.sleep(KICK_AGAIN)
        await self._kick(user)

    async def _list(self, data: bytes) -> bytes:
        request = decode(data or b"{}", BusCredsListRequest)
        try:
            records = await self.creds.records(request.namespace, request.token_id)
        except StoreError as exc:
            return encode(BusCredsListReply(ok=False, error=f"cannot read the credentials: {exc}"))
        return encode(BusCredsListReply(ok=True, credentials=[_info(r) for r in records[: request.limit]],
                                        total=len(records)))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_config.interval)
            try:
                deleted = await self.sweeper.sweep(time.time())
            except StoreError as exc:
                self.log.warning("credential sweep failed; retrying later", error=str(exc)[:300])
                continue
            for key, reason in deleted.items():
                self.log.info("bus credential swept", user=USER_PREFIX + key.rsplit("/", 1)[-1], reason=reason)


def _info(record: BusCredsRecord) -> BusCredsInfo:
    return BusCredsInfo(user=USER_PREFIX + record.id, namespace=record.namespace,
                        service_account=record.service_account, created=record.created, issued_by=record.issued_by,
                        expires=record.expires, last_seen=record.last_seen, revoked=record.revoked,
                        revoked_at=record.revoked_at, token_id=record.token_id)

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

The account seed is read from the file ISTHMUS_AUTH_SEED_FILE (mode 0600, written by `isthmus up`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

from proto import subjects
from proto.busauth import (
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
from runtime.bus import decode, encode
from runtime.service import ServiceProcess
from runtime import natsjwt
from services.auth.creds import Credentials, Refused, token_digest

SEED_ENV = "ISTHMUS_AUTH_SEED_FILE"
SESSION_SECONDS = 600  # the longest a proxy connection lives on one callout answer (revocation bound)
JOIN_SECONDS = 60  # a token-only connection: enough to ask for credentials


class AuthService(ServiceProcess):
    name: ClassVar[str] = "auth"

    async def start(self) -> None:
        seed_file = os.environ.get(SEED_ENV, "")
        if not seed_file:
            raise SystemExit(f"auth: {SEED_ENV} is not set (the account nkey seed file `isthmus up` writes)")
        self.seed = Path(seed_file).read_text().strip()
        self.creds = Credentials(self.store)
        q = subjects.QUEUE_AUTH
        # nats-server asks from its own system inbox (and only the server may publish on the callout subject)
        await self.bus.serve(subjects.AUTH_CALLOUT, self._callout, queue=q, concurrency=16,
                             reply_prefixes=("$SYS._INBOX.",))
        await self.bus.serve(subjects.BUS_CREDS_ISSUE, self._issue, queue=q)
        await self.bus.serve(subjects.BUS_CREDS_REVOKE, self._revoke, queue=q)
        await self.bus.serve(subjects.BUS_JOIN, self._join, queue=q)

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
        return await self._new(request.namespace, request.service_account, request.ttl_seconds, "operator")

    async def _join(self, data: bytes) -> bytes:
        request = decode(data, BusJoinRequest)
        try:
            tok = await self.creds.token(request.token, time.time())
        except Refused as exc:
            self.log.warning("join refused", reason=str(exc))
            return encode(BusCredsReply(ok=False, error=str(exc)))
        return await self._new(tok.namespace, tok.service_account, 0, f"token {tok.id}", tok)

    async def _new(self, namespace: str, service_account: str, ttl: int, by: str,
                   token: TokenRecord | None = None) -> bytes:
        try:
            user, password, record = await self.creds.issue(namespace, service_account, ttl, time.time(), token)
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
        try:
            await self.creds.revoke(request.user)
        except Refused as exc:
            return encode(BusCredsRevokeReply(ok=False, error=str(exc)))
        self.log.info("bus credential revoked", user=request.user)
        return encode(BusCredsRevokeReply(ok=True))

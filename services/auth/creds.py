"""Proxies' bus credentials in etcd (/isthmus/bus/creds/<id>), and the bootstrap-token check of a join.

A credential is user `proxy.<id>` (id: 16 hex characters, 64 random bits) and a password of 256 random
bits; etcd holds only the password's SHA-256 (compared in constant time). Bound to one namespace and
service account; optionally expiring; revocable (the record stays, marked revoked, so a later connection
hears "revoked", not "unknown").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from proto.busauth import BusCredsRecord
from proto.ca import TokenRecord
from proto.subjects import identity_name_error
from runtime import bootstrap_tokens
from runtime.bus import decode, encode
from runtime.store import Store

PREFIX = "/isthmus/bus/creds/"
USER_PREFIX = "proxy."
_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_TTL = 365 * 86400
MAX_CREDENTIALS = 100_000  # records etcd may hold at once (revoked and expired ones count until deleted)


class Refused(Exception):
    """str(exc) is the reason, for the audit log and the requester; never a secret."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_digest(token: str) -> str:
    """What a joining proxy's inbox is named by (proto/busauth.py join_inbox_prefix)."""
    return _hash(token.strip())[:32]


class Credentials:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def issue(self, namespace: str, service_account: str, ttl: int, now: float,
                    token: TokenRecord | None = None) -> tuple[str, str, BusCredsRecord]:
        """(user, password, record): a new credential, stored. With `token` (a join), refused once that token
        has joined `max_uses` times: joining does not spend it (the ca does, on signing), so without this bound
        one unspent token would mint credentials without end (each kept until revoked, up to MAX_CREDENTIALS,
        which would then refuse every proxy's join)."""
        problem = identity_name_error(namespace, service_account)  # they become subject permissions
        if problem:
            raise Refused(problem)
        if not 0 <= ttl <= MAX_TTL:
            raise Refused(f"ttl {ttl}s: give 0 (until revoked) to {MAX_TTL // 86400} days")
        held, _ = await self.store.list(PREFIX)
        if len(held) >= MAX_CREDENTIALS:
            raise Refused(f"{len(held)} bus credentials exist, the most the auth service keeps (MAX_CREDENTIALS): "
                          "delete revoked ones first")
        if token is not None:
            joined = sum(1 for entry in held if decode(entry.value, BusCredsRecord).token_id == token.id)
            if joined >= token.max_uses:
                raise Refused(f"token {token.id} already joined {joined} time(s), as many as its uses "
                              f"({token.max_uses}) allow: create a new token (`isthmus token create`)")
        cred_id = secrets.token_hex(8)
        password = secrets.token_urlsafe(32)
        record = BusCredsRecord(id=cred_id, namespace=namespace, service_account=service_account,
                                secret_sha256=_hash(password), created=now, expires=now + ttl if ttl else 0.0,
                                token_id=token.id if token is not None else "")
        await self.store.put(PREFIX + cred_id, encode(record))
        return USER_PREFIX + cred_id, password, record

    async def check(self, user: str, password: str, now: float) -> BusCredsRecord:
        """The record of a valid credential; Refused with the reason otherwise."""
        cred_id = user.removeprefix(USER_PREFIX)
        if not _ID.match(cred_id):
            raise Refused(f"unknown user {user[:80]!r}")
        entry = await self.store.get(PREFIX + cred_id)
        record = decode(entry.value, BusCredsRecord) if entry else None
        if record is None or not hmac.compare_digest(record.secret_sha256, _hash(password)):
            raise Refused(f"unknown user or wrong password for {user}")
        if record.revoked:
            raise Refused(f"{user} was revoked")
        if record.expires and now >= record.expires:
            raise Refused(f"{user} expired")
        return record

    async def revoke(self, user: str) -> BusCredsRecord:
        cred_id = user.removeprefix(USER_PREFIX)
        entry = await self.store.get(PREFIX + cred_id) if _ID.match(cred_id) else None
        if entry is None:
            raise Refused(f"no credential {user[:80]!r}")
        record = decode(entry.value, BusCredsRecord)
        record.revoked = True
        await self.store.put(PREFIX + cred_id, encode(record))
        return record

    async def known_token(self, token: str) -> TokenRecord:
        """The record of a token whose id exists and whose secret matches, whatever its state; Refused
        ("malformed", "unknown token") otherwise. Holding it proves its holder was given the token."""
        try:
            token_id, secret = bootstrap_tokens.split(token)
            entry = await self.store.get(bootstrap_tokens.PREFIX + token_id)
            return bootstrap_tokens.check_known(decode(entry.value, TokenRecord) if entry else None, secret)
        except bootstrap_tokens.TokenRefused as exc:
            raise Refused(str(exc)) from None

    async def token(self, token: str, now: float) -> TokenRecord:
        """The bootstrap token's record when it could still pay for a signing (not spent here: the ca
        spends it on CA_SIGN); Refused with the reason otherwise (runtime/bootstrap_tokens.py: the ca's rules)."""
        record = await self.known_token(token)
        try:
            bootstrap_tokens.check_usable(record, now)
        except bootstrap_tokens.TokenRefused as exc:
            raise Refused(str(exc)) from None
        return record

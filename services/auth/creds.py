"""Proxies' bus credentials in etcd (/isthmus/bus/creds/<id>), and the bootstrap-token check of a join.

A credential is user `proxy.<id>` (id: 16 hex characters, 64 random bits) and a password of 256 random
bits; etcd holds only the password's SHA-256 (compared in constant time). Bound to one namespace and
service account; optionally expiring; revocable (the record stays, marked revoked, so a later connection
hears "revoked", not "unknown", until the sweep deletes it: services/auth/sweep.py). Each record says how
it was issued (a join, or the operator) and when the callout last let it in (`last_seen`, written at most
every LAST_SEEN_EVERY seconds). Every write is a compare-and-swap on the record's etcd revision, so a
last-seen refresh can never undo a revocation that raced it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from proto.busauth import BusCredsRecord
from runtime.store import BUS_CREDS_PREFIX
from proto.ca import TokenRecord
from proto.subjects import identity_name_error
from runtime import bootstrap_tokens
from runtime.bus import decode, encode
from runtime.store import Store

PREFIX = BUS_CREDS_PREFIX
JOINS = "/isthmus/bus/joins/"  # <token id>: how many times that token joined (services/auth: _count_join)
JOINS_KEPT = 3600  # seconds a token's join count outlives the token (the ca sweeps a token an hour after expiry)
USER_PREFIX = "proxy."
_ID = re.compile(r"[0-9a-f]{16}")  # always fullmatch(): "$" also matches before a trailing newline
MAX_TTL = 365 * 86400
MAX_CREDENTIALS = 100_000  # records etcd may hold at once (revoked and expired ones count until deleted)
LAST_SEEN_EVERY = 60.0  # seconds: a reconnect storm costs at most one etcd write per credential per minute
CAS_ATTEMPTS = 10


class Refused(Exception):
    """str(exc) is the reason, for the audit log and the requester; never a secret."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def cred_id_of(user: str) -> str:
    """The id of `proxy.<id>` or of a bare `<id>`; '' when the text is neither."""
    cred_id = user.removeprefix(USER_PREFIX)
    return cred_id if _ID.fullmatch(cred_id) else ""


def _with(record: BusCredsRecord, **changes: object) -> BusCredsRecord:
    fields = {f: getattr(record, f) for f in record.__struct_fields__}
    fields.update(changes)
    return BusCredsRecord(**fields)


def token_digest(token: str) -> str:
    """What a joining proxy's inbox is named by (proto/busauth.py join_inbox_prefix)."""
    return _hash(token.strip())[:32]


class Credentials:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def issue(self, namespace: str, service_account: str, ttl: int, now: float,
                    token: TokenRecord | None = None, issued_by: str = "operator") -> tuple[str, str, BusCredsRecord]:
        """(user, password, record): a new credential, stored; `issued_by`: "join" or "operator". With `token`
        (a join), refused once that token has joined `max_uses` times: joining does not spend it (the ca does,
        on signing), so without this bound one unspent token would mint credentials without end (each kept
        until revoked, up to MAX_CREDENTIALS, which would then refuse every proxy's join)."""
        problem = identity_name_error(namespace, service_account)  # they become subject permissions
        if problem:
            raise Refused(problem)
        if not 0 <= ttl <= MAX_TTL:
            raise Refused(f"ttl {ttl}s: give 0 (until revoked) to {MAX_TTL // 86400} days")
        held = await self.store.keys(PREFIX)
        if len(held) >= MAX_CREDENTIALS:
            raise Refused(f"{len(held)} bus credentials exist, the most the auth service keeps (MAX_CREDENTIALS): "
                          "delete revoked ones first")
        if token is not None:
            await self._count_join(token, now)
        cred_id = secrets.token_hex(8)
        password = secrets.token_urlsafe(32)
        record = BusCredsRecord(id=cred_id, namespace=namespace, service_account=service_account,
                                secret_sha256=_hash(password), created=now, expires=now + ttl if ttl else 0.0,
                                token_id=token.id if token is not None else "", issued_by=issued_by)
        if not await self.store.put_if_revision(PREFIX + cred_id, encode(record), 0):
            raise Refused("a credential id collided; try again")  # 2^-64: practically never
        return USER_PREFIX + cred_id, password, record

    async def _count_join(self, token: TokenRecord, now: float) -> None:
        """Count one join of `token` in /isthmus/bus/joins/<token id> by a compare-and-swap, so auth replicas
        answering joins at once cannot both take its last use (counting the records that name the token
        could: each replica saw the other's join missing, and read every record per join); Refused once it
        joined `max_uses` times. The counter lives on a lease until JOINS_KEPT after the token expires."""
        key = JOINS + token.id
        for _ in range(CAS_ATTEMPTS):
            entry = await self.store.get(key)
            try:
                joined = int(entry.value) if entry else 0
            except ValueError:
                joined = token.max_uses  # not ours to interpret: refuse rather than count from zero
            if joined >= token.max_uses:
                raise Refused(f"token {token.id} already joined {joined} time(s), as many as its uses "
                              f"({token.max_uses}) allow: create a new token (`isthmus token create`)")
            lease = entry.lease if entry else await self.store.grant(max(60, int(token.expires - now) + JOINS_KEPT))
            if await self.store.put_if_revision(key, str(joined + 1).encode(), entry.mod_revision if entry else 0,
                                                lease=lease):
                return
        raise Refused(f"token {token.id} is joining too fast to count; try again")

    async def check(self, user: str, password: str, now: float) -> BusCredsRecord:
        """The record of a valid credential, its last_seen refreshed (at most every LAST_SEEN_EVERY s);
        Refused with the reason otherwise."""
        cred_id = user.removeprefix(USER_PREFIX)
        if not _ID.fullmatch(cred_id):
            raise Refused(f"unknown user {user[:80]!r}")
        entry = await self.store.get(PREFIX + cred_id)
        record = decode(entry.value, BusCredsRecord) if entry else None
        if record is None or not hmac.compare_digest(record.secret_sha256, _hash(password)):
            raise Refused(f"unknown user or wrong password for {user}")
        if record.revoked:
            raise Refused(f"{user} was revoked")
        if record.expires and now >= record.expires:
            raise Refused(f"{user} expired")
        if now - record.last_seen >= LAST_SEEN_EVERY:
            assert entry is not None
            seen = _with(record, last_seen=now)
            # lost race (a revocation, another connection's refresh): keep what is stored; the revocation
            # still reaches this connection through the kick
            if await self.store.put_if_revision(entry.key, encode(seen), entry.mod_revision):
                record = seen
        return record

    async def revoke(self, user: str, now: float) -> BusCredsRecord:
        """Mark the credential revoked (`proxy.<id>` or `<id>`); an already revoked one is returned as it is.
        Refused "no credential ..." (quoting what was asked) when there is none."""
        cred_id = cred_id_of(user)
        for _ in range(CAS_ATTEMPTS):
            entry = await self.store.get(PREFIX + cred_id) if cred_id else None
            if entry is None:
                raise Refused(f"no credential {user[:80]!r} (isthmus proxy credentials list shows them)")
            record = decode(entry.value, BusCredsRecord)
            if record.revoked:
                return record
            revoked = _with(record, revoked=True, revoked_at=now)
            if await self.store.put_if_revision(entry.key, encode(revoked), entry.mod_revision):
                return revoked
        raise Refused(f"{user[:80]} changes too fast to revoke; try again")

    async def records(self, namespace: str = "", token_id: str = "") -> list[BusCredsRecord]:
        """Every readable record (of `namespace`, and joined with `token_id`, when given), oldest first."""
        entries, _ = await self.store.list(PREFIX)
        found = []
        for entry in entries:
            try:
                record = decode(entry.value, BusCredsRecord)
            except Exception:
                continue  # not ours to interpret
            if (not namespace or record.namespace == namespace) and (not token_id or record.token_id == token_id):
                found.append(record)
        return sorted(found, key=lambda r: (r.created, r.id))

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

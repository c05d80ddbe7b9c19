"""Bootstrap tokens: what a proxy shows for its first certificate (kubeadm's bootstrap tokens are the model:
an id anyone may see, and a secret only the holder knows).

A token is `<id>.<secret>`: id 16 hex characters (64 random bits, the key in etcd), secret 43 base64url
characters (256 random bits). etcd holds only the secret's SHA-256 (TokenRecord, /isthmus/ca/tokens/<id>);
the comparison is constant-time. The rules of a token (format, check) are in runtime/bootstrap_tokens.py,
which the auth service shares. A redemption decrements `uses` with an etcd compare-and-swap on the
record's revision, so two concurrent redemptions of a one-use token cannot both win.

Refusals, each with its own reason: unknown (no such id, or the secret does not match: the two are not
told apart, so ids cannot be probed), revoked, expired, used up. Records stay RETAIN seconds after they
expire (so a late user hears "expired", not "unknown"), then any ca replica sweeps them.
"""

from __future__ import annotations

import base64
import re
import secrets

from proto.ca import TokenInfo, TokenRecord
from runtime.bootstrap_tokens import PREFIX, TokenRefused, check, secret_hash, split, token_id_of

__all__ = ["PREFIX", "TokenRefused", "Tokens", "check", "info", "new_token", "split", "token_id_of"]
from runtime.bus import decode, encode
from runtime.store import Store

RETAIN = 3600.0  # seconds an expired record is kept before it is swept
MIN_TTL, MAX_TTL = 60, 30 * 86400  # seconds a token may live (kubeadm's default is 24 h)
MAX_USES = 10_000
CAS_ATTEMPTS = 20  # a redemption retries this often when other redemptions of the same token race it


def _hash(secret: str) -> str:
    return secret_hash(secret)


def new_token(namespace: str, service_account: str, ttl: int, uses: int, now: float) -> tuple[str, TokenRecord]:
    """The token text (shown once) and the record to store."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise TokenRefused(f"ttl {ttl}s: give {MIN_TTL}s to {MAX_TTL // 86400} days")
    if not 1 <= uses <= MAX_USES:
        raise TokenRefused(f"uses {uses}: give 1 to {MAX_USES}")
    token_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    record = TokenRecord(id=token_id, namespace=namespace, service_account=service_account,
                         secret_sha256=_hash(secret), created=now, expires=now + ttl, uses=uses, max_uses=uses)
    return f"{token_id}.{secret}", record


def info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(id=record.id, namespace=record.namespace, service_account=record.service_account,
                     created=record.created, expires=record.expires, uses=record.uses, max_uses=record.max_uses,
                     revoked=record.revoked)


def _spent(record: TokenRecord, **changes: object) -> TokenRecord:
    fields = {f: getattr(record, f) for f in record.__struct_fields__}
    fields.update(changes)
    return TokenRecord(**fields)


class Tokens:
    """The tokens in etcd. `max_tokens` bounds how many records may exist at once (sweeping first)."""

    def __init__(self, store: Store, max_tokens: int) -> None:
        self.store = store
        self.max_tokens = max_tokens

    async def create(self, namespace: str, service_account: str, ttl: int, uses: int, now: float) -> tuple[str, TokenRecord]:
        text, record = new_token(namespace, service_account, ttl, uses, now)
        if len(await self.records(now)) >= self.max_tokens:
            raise TokenRefused(f"{self.max_tokens} tokens exist (ISTHMUS_CA_MAX_TOKENS): revoke unused ones, or "
                               "wait until expired ones are swept")
        if not await self.store.put_if_revision(PREFIX + record.id, encode(record), 0):
            raise TokenRefused("a token id collided; try again")  # 2^-64: practically never
        return text, record

    async def records(self, now: float) -> list[TokenRecord]:
        """Every record, sweeping the ones expired more than RETAIN ago; unreadable records are skipped."""
        entries, _ = await self.store.list(PREFIX)
        records = []
        for entry in entries:
            try:
                record = decode(entry.value, TokenRecord)
            except Exception:
                continue  # not ours to interpret; left for the operator
            if now >= record.expires + RETAIN:
                await self.store.delete(entry.key)
            else:
                records.append(record)
        return records

    async def revoke(self, token_id: str) -> TokenRecord:
        for _ in range(CAS_ATTEMPTS):
            entry = await self.store.get(PREFIX + token_id) if re.fullmatch(r"[0-9a-f]{16}", token_id) else None
            if entry is None:
                raise TokenRefused(f"no token {token_id[:64]!r} (isthmus token list shows them)")
            record = decode(entry.value, TokenRecord)
            if record.revoked:
                return record
            revoked = _spent(record, revoked=True)
            if await self.store.put_if_revision(entry.key, encode(revoked), entry.mod_revision):
                return revoked
        raise TokenRefused(f"token {token_id} changes too fast to revoke; try again")

    async def redeem(self, token: str, now: float) -> TokenRecord:
        """Spend one use of `token`; the record as it was (its namespace and service account entitle the
        signing). TokenRefused with the reason otherwise."""
        token_id, secret = split(token)
        for _ in range(CAS_ATTEMPTS):
            entry = await self.store.get(PREFIX + token_id)
            record = None
            if entry is not None:
                try:
                    record = decode(entry.value, TokenRecord)
                except Exception:
                    record = None
            check(record, secret, now)
            assert entry is not None and record is not None
            if await self.store.put_if_revision(entry.key, encode(_spent(record, uses=record.uses - 1)),
                                                entry.mod_revision):
                return record
        raise TokenRefused(f"token {token_id} is being redeemed by many requests at once; try again")

"""The rules of a bootstrap token, shared by the ca (which makes, lists, revokes and spends them:
services/ca/tokens.py) and the auth service (which lets a token's holder join the bus: services/auth/creds.py).
Services may not import each other, so the rules live here, once.

A token is `<id>.<secret>`: id 16 hex characters (the key of its TokenRecord in etcd), secret 43 base64url
characters (256 random bits). etcd holds only the secret's SHA-256; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from proto.ca import TokenRecord
from runtime.files import read_bounded

PREFIX = "/isthmus/ca/tokens/"  # etcd: TokenRecord per id
_TOKEN = re.compile(r"^([0-9a-f]{16})\.([A-Za-z0-9_-]{43})\Z")


class TokenRefused(Exception):
    """str(exc) is the reason a requester or operator sees; it never includes the secret."""


def secret_hash(secret: str) -> str:
    """What a TokenRecord keeps of the secret (hex SHA-256)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split(token: str) -> tuple[str, str]:
    """(id, secret); TokenRefused when the text is not a token at all."""
    match = _TOKEN.match(token.strip())
    if not match:
        raise TokenRefused("the token is malformed: expected <16 hex>.<43 base64url characters>, as "
                           "`isthmus token create` prints it")
    return match.group(1), match.group(2)


MAX_TOKEN_FILE = 4096  # bytes read of a --token-file: a token is 60 characters, with whitespace around it


def read_token_file(path: str) -> str:
    """What `path` holds, stripped ("" when the file is empty or blank; `split` checks it is a token). OSError
    when it cannot be read; TokenRefused when it holds more than MAX_TOKEN_FILE bytes (only that many are read:
    /dev/zero ends)."""
    data = read_bounded(path, MAX_TOKEN_FILE)  # a FIFO is refused, never waited on
    if len(data) > MAX_TOKEN_FILE:
        raise TokenRefused(f"it holds more than {MAX_TOKEN_FILE} bytes; a token is one line of 60 characters, "
                           "as `isthmus token create` prints it")
    return data.decode("utf-8", errors="replace").strip()


def token_id_of(token: str) -> str:
    """The id part, for audit lines (never the secret); '' when the text is not a token."""
    match = _TOKEN.match(token.strip())
    return match.group(1) if match else ""


def check_known(record: TokenRecord | None, secret: str) -> TokenRecord:
    """The record when it exists and the secret matches (its holder was given this token); TokenRefused
    "unknown" otherwise: no such id and a wrong secret are not told apart, so ids cannot be probed."""
    if record is None or not hmac.compare_digest(record.secret_sha256, secret_hash(secret)):
        raise TokenRefused("unknown token: it was never issued, or it was swept after expiring; ask the "
                           "operator for a new one (isthmus token create)")
    return record


def check_usable(record: TokenRecord, now: float) -> None:
    """TokenRefused with the reason this (known) token cannot pay for a signing at `now` (Unix seconds)."""
    if record.revoked:
        raise TokenRefused(f"token {record.id} was revoked; ask the operator for a new one")
    if now >= record.expires:
        raise TokenRefused(f"token {record.id} expired; ask the operator for a new one (isthmus token create --ttl)")
    if record.uses <= 0:
        raise TokenRefused(f"token {record.id} is used up ({record.max_uses} of {record.max_uses} uses); ask the "
                           "operator for a new one (isthmus token create --uses)")


def check(record: TokenRecord | None, secret: str, now: float) -> None:
    """TokenRefused with the reason this record cannot pay for a signing now."""
    check_usable(check_known(record, secret), now)

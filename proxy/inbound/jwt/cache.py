"""Verified tokens kept per rule, so a client that sends the same token again costs a dict lookup instead
of a signature check. Envoy's JwtCache (source/extensions/filters/http/jwt_authn/jwt_cache.cc), with its
JwtCacheConfig defaults: at most CACHE_SIZE tokens (least recently used goes first), and a token longer
than CACHE_MAX_TOKEN_BYTES is verified every time rather than kept. An entry whose `exp` (plus the clock
skew) has passed is dropped when looked up; a new push starts with an empty cache (keys may have changed).
Only tokens that verified completely (issuer, time, audiences, signature) are kept, so a hit needs
only the expiry checked again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

CACHE_SIZE = 100  # Envoy JwtCacheConfig.jwt_cache_size default
CACHE_MAX_TOKEN_BYTES = 4096  # Envoy JwtCacheConfig.jwt_max_token_size default

V = TypeVar("V")


class TokenCache(Generic[V]):
    """token -> (expiry in unix seconds, with the skew added; 0: never, value)."""

    __slots__ = ("entries", "size", "max_token")

    def __init__(self, size: int = CACHE_SIZE, max_token: int = CACHE_MAX_TOKEN_BYTES) -> None:
        self.entries: OrderedDict[bytes, tuple[int, V]] = OrderedDict()
        self.size = size
        self.max_token = max_token

    def get(self, token: bytes, now: int) -> V | None:
        entry = self.entries.get(token)
        if entry is None:
            return None
        until, value = entry
        if until and now > until:
            del self.entries[token]
            return None
        self.entries.move_to_end(token)
        return value

    def put(self, token: bytes, until: int, value: V) -> None:
        if len(token) > self.max_token or self.size <= 0:
            return
        entries = self.entries
        entries[token] = (until, value)
        entries.move_to_end(token)
        if len(entries) > self.size:
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self.entries)

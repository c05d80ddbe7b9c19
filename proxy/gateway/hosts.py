"""Name matching at the gateway, as Envoy's virtual host and filter chain selection do it.

    DomainTable(entries).lookup(host) -> value | None     Host header -> a port's virtual host
    pick_by_name(entries, name, default) -> value | None  SNI -> a port's TLS server

Both match a lower-cased name (the Host header without its port) against the names pilot pushed:
an exact name first, then the longest wildcard suffix (`*.example.com` matches `a.example.com` and
`a.b.example.com`, not `example.com`: Envoy's virtual host wildcards), then `*`. Envoy's route table
(envoy/config/route/v3/route_components.proto VirtualHost.domains) and its filter chain match on
server_names (listener_components.proto FilterChainMatch) order them the same way.

The lookup is done once per distinct name and cached (bounded), so a request pays one dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")

LOOKUP_CACHE_SIZE = 4096  # distinct Host values remembered per port (any client may send any Host)


def host_of(authority: str) -> str:
    """`Example.COM:8080` -> `example.com`; `[::1]:80` -> `[::1]`; a trailing dot dropped."""
    if authority.startswith("["):
        end = authority.find("]")
        name = authority[:end + 1] if end > 0 else authority
    else:
        name = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
    return name.lower().rstrip(".")


class DomainTable(Generic[V]):
    """Names ("a.example.com", "*.example.com", "*") -> values; the first entry naming a domain wins
    (pilot orders them as Istio merges VirtualServices: the older first)."""

    __slots__ = ("exact", "wildcards", "star", "_cache")

    def __init__(self, entries: Iterable[tuple[str, V]]) -> None:
        self.exact: dict[str, V] = {}
        wildcards: dict[str, V] = {}
        self.star: V | None = None
        for domain, value in entries:
            domain = domain.lower().rstrip(".")
            if domain == "*":
                if self.star is None:
                    self.star = value
            elif domain.startswith("*"):
                wildcards.setdefault(domain[1:], value)  # ".example.com" (or "-suffix.example.com")
            else:
                self.exact.setdefault(domain, value)
        # longest suffix first: the most specific wildcard wins
        self.wildcards = sorted(wildcards.items(), key=lambda item: -len(item[0]))
        self._cache: dict[str, V | None] = {}

    def lookup(self, name: str) -> V | None:
        """The value for `name` (without port, in any case), or None."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        key, name = name, name.lower().rstrip(".")
        found = self.exact.get(name)
        if found is None:
            for suffix, value in self.wildcards:
                if name.endswith(suffix) and len(name) > len(suffix):
                    found = value
                    break
            else:
                found = self.star
        if len(self._cache) >= LOOKUP_CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = found
        return found


def pick_by_name(table: DomainTable[V], name: str, default: V | None) -> V | None:
    """The server for a ClientHello's SNI `name`: its match in `table` (a `*` server matches any name); None
    when nothing matches (Envoy: no matching filter chain, the connection is closed). A hello without SNI gets
    `default`: the port's `*` server, else its first (so `curl https://<ip>/` and clients that send no SNI
    still reach a single-server port; Envoy would need the `*` server for that)."""
    if not name:
        return default
    return table.lookup(name)

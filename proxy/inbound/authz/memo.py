"""A bounded memo of authorization decisions, keyed by exactly the request attributes the policies read.

A workload's policies are a pure function of a handful of attributes (its rules' keys: the peer's principal,
source IP, the method, path, host, a few headers ...); a sidecar sees the same few combinations again and
again (one caller, one route), so the decision is computed once per distinct combination and looked up after.
Envoy evaluates its RBAC matchers on every request; this is the same answer, cached.

    decision_key(keys) -> (head -> key) | None      None when a key cannot be part of a memo key
                                                    (request.auth.*: a verified JWT's claims)
    Memo(limit)                                     .get(key) / .put(key, decision); cleared whole when full

The memo lives in the compiled check, so every config push (a new Authorization) starts an empty one. A
hostile caller varying its path costs a miss and an insert per request, never unbounded memory: at most
MEMO_LIMIT keys of at most KEY_MAX_CHARS characters each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from proxy.core.request import RequestHead, header_value

MEMO_LIMIT = 1024  # distinct attribute combinations kept per workload's policies
KEY_MAX_CHARS = 512  # a key with longer strings (a 60 KiB path) is not kept: the memo holds at most ~0.5 MiB
Decision = tuple[str, "str | None"]  # (the access log's details, or ""; the denying policy id, or None)
ALLOWED: Decision = ("", None)  # the one object every plain "allowed" decision is (engine.py tests it by identity)

# Istio attribute (leaves.py) -> the RequestHead attribute its leaf reads (a dotted path: operator.attrgetter
# builds the key in C). Peer identity leaves read the principal only; `:authority` also reads the Host header.
_ATTRIBUTES = {
    "source.principal": "downstream.principal", "source.namespace": "downstream.principal",
    "source.ip": "downstream.source_ip", "remote.ip": "downstream.source_ip",
    "destination.ip": "downstream.destination_ip", "destination.port": "downstream.destination_port",
    "connection.sni": "downstream.sni", ":method": "method", "path": "path",  # both path readings derive from it
    ":authority": "host",
}
_HEADER = "request.headers["


def decision_key(keys: Iterable[str]) -> Callable[[RequestHead], Any] | None:
    """The memo key function for a set of attribute names (leaves.py's keys), or None if one of them cannot be
    keyed (request.auth.*: a verified JWT's claims, a per-token tree)."""
    attributes: set[str] = set()
    headers: set[bytes] = set()
    authority = False
    for key in keys:
        if key in _ATTRIBUTES:
            attributes.add(_ATTRIBUTES[key])
            authority = authority or key == ":authority"
        elif key.startswith(_HEADER) and key.endswith("]"):
            headers.add(key[len(_HEADER):-1].lower().encode("latin-1"))
        else:
            return None
    if authority and not headers:  # rules on hosts, none on a header: the one string HostMatcher reads
        attributes.discard("host")
        return _authority_key(attrgetter(*sorted(attributes)) if attributes else None)
    if authority:
        headers.add(b"host")  # HostMatcher reads the Host header as sent (its port included)
    get = attrgetter(*sorted(attributes)) if attributes else (lambda head: None)
    names = tuple(sorted(headers))
    if not names:
        return get
    if len(names) == 1:  # a header condition reads every value joined
        name = names[0]
        return lambda head: (get(head), header_value(head, name))
    return _headers_key(get, names)


def _authority_key(get: Callable[[RequestHead], Any] | None) -> Callable[[RequestHead], Any]:
    """`(get(head), what HostMatcher reads)`: the first Host header's bytes, else head.host, a str (leaves.py's
    _host matches the same string either way, so a bytes and a str key that decide alike are two entries). Not
    every Host value joined: `a` and `b` would key as one `a,b`, which HostMatcher does not read. The walk stops
    at Host, mostly the first header."""
    if get is None:
        def host_only(head: RequestHead) -> Any:
            for name, value in head.headers:
                if name == b"host":
                    return value
            return head.host

        return host_only

    def key(head: RequestHead) -> Any:
        for name, value in head.headers:
            if name == b"host":
                return get(head), value
        return get(head), head.host

    return key


def _headers_key(get: Callable[[RequestHead], Any], names: tuple[bytes, ...]) -> Callable[[RequestHead], Any]:
    """`(get(head), header_value(head, name) for each name)`, as bytes (latin-1 is one-to-one, so no decode).
    A head with no name twice (the listener's usual one) is read through `dict(head.headers)`, the walk in C
    (a Python loop with a lookup per header was ~7 dict.get calls a request for the bench's six headers); one
    with a name twice is walked to join the values as header_value does."""
    where = {name: i for i, name in enumerate(names)}
    none = (None,) * len(names)

    def joined(head: RequestHead) -> Any:
        found = list(none)
        for name, value in head.headers:
            i = where.get(name)
            if i is not None:  # as header_value: every value joined with "," (the listener stripped their OWS)
                found[i] = value if found[i] is None else found[i] + b"," + value
        # `a` and `b` join as `a,b` does, but HostMatcher reads the first: the first values too (and a key one
        # longer than the dict path's, so the two never meet)
        return (get(head), *found, tuple(head.header(name) for name in names))

    if len(names) == 2:  # Host and one header condition, the usual pair: no map, no unpacking
        one, two = names

        def pair(head: RequestHead) -> Any:
            headers = head.headers
            seen = dict(headers)
            if len(seen) == len(headers):
                return get(head), seen.get(one), seen.get(two)
            return joined(head)

        return pair

    def key(head: RequestHead) -> Any:
        headers = head.headers
        seen = dict(headers)
        if len(seen) == len(headers):  # no name twice: each value is all of that header's
            return (get(head), *map(seen.get, names))
        return joined(head)

    return key


def _chars(key: Any) -> int:
    if isinstance(key, (str, bytes)):  # bytes: a Host header's value
        return len(key)
    if isinstance(key, tuple):
        return sum(_chars(part) for part in key)
    return 0  # a port, None


class Memo:
    """Decisions by key, at most `limit` of them, each key's strings at most KEY_MAX_CHARS long (longer ones
    are decided every time): full, it is cleared whole (no per-hit bookkeeping)."""

    __slots__ = ("decisions", "limit")

    def __init__(self, limit: int = MEMO_LIMIT) -> None:
        self.decisions: dict[Any, Decision] = {}
        self.limit = limit

    def put(self, key: Any, decision: Decision) -> None:
        if _chars(key) > KEY_MAX_CHARS:
            return
        if len(self.decisions) >= self.limit:
            self.decisions.clear()
        self.decisions[key] = decision

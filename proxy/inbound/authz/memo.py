"""A bounded memo of authorization decisions, keyed by exactly the request attributes the policies read.

A workload's policies are a pure function of a handful of attributes (its rules' keys: the peer's principal,
source IP, the method, path, host, a few headers ...); a sidecar sees the same few combinations again and
again (one caller, one route), so the decision is computed once per distinct combination and looked up after.
Envoy evaluates its RBAC matchers on every request; this is the same answer, cached.

    key_spec(keys) -> KeySpec | None                what the key holds (keyed.py builds it); None when a
                                                    key cannot be part of a memo key (request.auth.*: a
                                                    verified JWT's claims)
    decision_key(keys) -> (head -> key) | None      the key alone
    Memo(limit)                                     .get(key) / .put(key, decision); cleared whole when full

The memo lives in the compiled check, so every config push (a new Authorization) starts an empty one. A
hostile caller varying its path costs a miss and an insert per request, never unbounded memory: at most
MEMO_LIMIT keys of at most KEY_MAX_CHARS characters each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from proxy.core.request import RequestHead
from proxy.inbound.authz.keyed import KeySpec, key_function

MEMO_LIMIT = 1024  # distinct attribute combinations kept per workload's policies
KEY_MAX_CHARS = 512  # a key with longer strings (a 60 KiB path) is not kept: the memo holds at most ~0.5 MiB
Decision = tuple[str, "str | None"]  # (the access log's details, or ""; the denying policy id, or None)
ALLOWED: Decision = ("", None)  # the one object every plain "allowed" decision is (engine.py tests it by identity)

# Istio attribute (leaves.py) -> the RequestHead attribute its leaf reads (a dotted path: keyed.py reads it in
# the generated check). Peer identity leaves read the principal only; `:authority` also reads the Host header.
_ATTRIBUTES = {
    "source.principal": "downstream.principal", "source.namespace": "downstream.principal",
    "source.ip": "downstream.source_ip", "remote.ip": "downstream.source_ip",
    "destination.ip": "downstream.destination_ip", "destination.port": "downstream.destination_port",
    "connection.sni": "downstream.sni", ":method": "method", "path": "path",  # both path readings derive from it
    ":authority": "host",
}
_HEADER = "request.headers["


def key_spec(keys: Iterable[str]) -> KeySpec | None:
    """What the memo key holds for a set of attribute names (leaves.py's keys), or None if one of them cannot
    be keyed (request.auth.*: a verified JWT's claims, a per-token tree). keyed.py builds the key from it."""
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
        return KeySpec(tuple(sorted(attributes)), (), True)
    if authority:
        headers.add(b"host")  # HostMatcher reads the Host header as sent (its port included)
    return KeySpec(tuple(sorted(attributes)), tuple(sorted(headers)), False)


def decision_key(keys: Iterable[str]) -> Callable[[RequestHead], Any] | None:
    """The memo key function for a set of attribute names, or None (key_spec): a flat tuple of the attributes,
    then what the headers read (keyed.py's shapes)."""
    spec = key_spec(keys)
    return None if spec is None else key_function(spec)


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

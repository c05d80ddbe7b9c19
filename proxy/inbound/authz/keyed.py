"""The memoised authorization check as one generated Python function per push: the key built inline, a flat
tuple, looked up in the memo in the same frame.

    KeySpec(attributes, headers, authority)   what a memo key holds (memo.py key_spec builds it)
    key_function(spec) -> head -> key          the key alone (tests, memo.decision_key)
    memoised(spec, decisions, settle, target)  head -> target: the key, the lookup, and for an ALLOWED hit
                                               nothing else; anything else goes to `settle(head, key, decision)`

Why generated: a key of four attributes read through operator.attrgetter (dotted names, generic getattr on
slots, an argument tuple) and nested in a second tuple, built by a second frame, cost ~2k instructions a
request more than the same reads as attribute loads in the check's own frame, where CPython 3.11 specialises
each to a slot read. Only the fixed attribute paths of memo._ATTRIBUTES and the generated local names go into
the source text; header names and every other value a policy carries are passed in as constants (h0, h1 ...).

Key shapes (one per spec, so keys of two shapes never meet in one memo): the attributes in spec order, then
- no headers: nothing more;
- authority only: the first Host header's bytes, else head.host (what HostMatcher reads);
- one header: header_value(head, name) (every value joined, a str, as a header condition reads it);
- several: each header's value as bytes when no name occurs twice in the head (one `dict(headers)`, the walk
  in C); else `joined(headers)`: every value joined and then the first values as a tuple, one item longer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy.core.request import RequestHead, header_value


_EMPTY: dict[bytes, bytes] = {}  # RequestHead.picked when the listener found none of the names (never written)


class KeySpec:
    """`attributes`: dotted RequestHead attribute paths, in key order; `headers`: lower-case header names;
    `authority`: a rule reads the host and no header condition does (the key reads only the first Host);
    `picks`: the header names the listener may note for it (RequestHead.picked): all but Host, whose first value
    the key reads; None when there are none. The check compares the head's picked_by with this very object."""

    __slots__ = ("attributes", "headers", "authority", "picks")

    def __init__(self, attributes: tuple[str, ...], headers: tuple[bytes, ...], authority: bool) -> None:
        for path in attributes:  # the source text holds nothing but identifiers
            if not all(part.isidentifier() for part in path.split(".")):
                raise ValueError(f"not an attribute path: {path!r}")
        self.attributes = attributes
        self.headers = headers
        self.authority = authority
        self.picks = frozenset(headers) - {b"host"} or None


def _joined(names: tuple[bytes, ...]) -> Callable[[list[tuple[bytes, bytes]]], tuple[Any, ...]]:
    """headers -> (every value of each name joined with ",", as header_value does, as bytes), then the first
    values as a tuple: HostMatcher reads the first Host, and `a` then `b` join as one `a,b` does."""
    where = {name: i for i, name in enumerate(names)}

    def joined(headers: list[tuple[bytes, bytes]]) -> tuple[Any, ...]:
        found: list[bytes | None] = [None] * len(names)
        first: list[bytes | None] = [None] * len(names)
        for name, value in headers:
            i = where.get(name)
            if i is not None:
                if found[i] is None:
                    found[i] = first[i] = value
                else:
                    found[i] = found[i] + b"," + value  # type: ignore[operator]
        return (*found, tuple(first))

    return joined


def _picked(spec: KeySpec, parts: list[str]) -> list[str]:
    """Lines that leave the key in `key` from RequestHead.picked, when the listener noted exactly the names of
    `PICKS` (spec.picks) and no stage changed the headers since: the same key the walk makes of a head without
    a name twice (a value the listener joined is what header_value reads too: the rules decide alike)."""
    values = []
    for i, name in enumerate(spec.headers):
        # Host: the one value the listener let through (it refuses a second)
        values.append("head.authority" if name == b"host" else f"found.get(h{i})")
    lines = ["found = head.picked or EMPTY"]
    if len(spec.picks) == 1:  # one header condition (the usual case), mostly absent: no dict.get call then
        i = next(i for i, name in enumerate(spec.headers) if name != b"host")
        values[i] = f"None if (found := head.picked) is None else found.get(h{i})"
        lines = []
    if len(spec.headers) == 1:  # header_value's str, as the walk's key has it
        values = ["None if (found := head.picked) is None or (value := found.get(h0)) is None"
                  " else value.decode('latin-1')"]
    return lines + [f"key = ({', '.join(parts + values)},)"]


def _source(spec: KeySpec) -> str:
    """The body lines that leave the key in `key` (indented for the generated function)."""
    lines = []
    parts = []
    if any(path.startswith("downstream.") for path in spec.attributes):
        lines.append("ds = head.downstream")
    for path in spec.attributes:
        parts.append("ds." + path[len("downstream."):] if path.startswith("downstream.") else "head." + path)
    walk = _walk(spec, parts)
    if spec.picks is None:
        return "\n".join(lines + walk)
    lines.append("if head.picked_by is PICKS and not head.edited:")
    lines += ["    " + line for line in _picked(spec, parts)]
    lines.append("else:")
    lines += ["    " + line for line in walk]
    return "\n".join(lines)


def _walk(spec: KeySpec, parts: list[str]) -> list[str]:
    """Lines that leave the key in `key` from head.headers."""
    lines: list[str] = []
    parts = list(parts)
    if spec.authority:
        lines += ["for name, host in head.headers:",
                  "    if name == b'host':",
                  "        break",
                  "else:",
                  "    host = head.host"]
        parts.append("host")
    elif len(spec.headers) == 1:
        parts.append("header_value(head, h0)")
    elif spec.headers:
        lines += ["headers = head.headers",
                  "seen = dict(headers)"]
        found = ", ".join(f"seen.get(h{i})" for i in range(len(spec.headers)))
        lines += ["if len(seen) == len(headers):",
                  f"    key = ({', '.join(parts + [found])},)",
                  "else:",
                  f"    key = ({''.join(p + ', ' for p in parts)}*joined(headers),)"]
        return lines
    lines.append(f"key = ({''.join(p + ', ' for p in parts)})")
    return lines


def _namespace(spec: KeySpec) -> dict[str, Any]:
    names: dict[str, Any] = {"header_value": header_value, "joined": _joined(spec.headers), "PICKS": spec.picks,
                             "EMPTY": _EMPTY}
    names.update({f"h{i}": name for i, name in enumerate(spec.headers)})
    return names


def _indent(text: str, by: str) -> str:
    return "\n".join(by + line for line in text.splitlines())


def key_function(spec: KeySpec) -> Callable[[RequestHead], tuple[Any, ...]]:
    """head -> the memo key `memoised` builds for it."""
    names = _namespace(spec)
    exec(f"def key(head):\n{_indent(_source(spec), '    ')}\n    return key\n", names)  # noqa: S102
    return names["key"]  # type: ignore[no-any-return]


def memoised(spec: KeySpec, decisions: dict[Any, Any], allowed: object,
             settle: Callable[[RequestHead, Any, Any], None], target: object) -> Callable[[RequestHead], Any]:
    """The check: returns `target` when the memo holds `allowed` for the request's key (one identity test),
    else what `settle(head, key, decision or None)` leaves: it decides, stores, logs or raises; then `target`."""
    names = _namespace(spec)
    names.update(get=decisions.get, ALLOWED=allowed, settle=settle, target=target)
    body = _source(spec) + "\ndecision = get(key)\nif decision is not ALLOWED:\n    settle(head, key, decision)"
    exec(f"def check(head):\n{_indent(body, '    ')}\n    return target\n", names)  # noqa: S102
    return names["check"]  # type: ignore[no-any-return]

"""Istio's `headers` (HeaderOperations) of a rule and of its destinations, compiled once per rule.

As Envoy applies them: the destination's operations first, then the rule's (so the rule's `set` wins);
within one level `remove` first, then `set` (replaces every value of the name), then `add` (appends a
value). Request operations change what goes upstream (after a rewrite); response operations change the
head forwarded to the client. Responses the sidecar makes itself (directResponse, redirect, errors) are
not edited. Names are lower-case (pilot lower-cases them, as both sides' header lists are).
"""

from __future__ import annotations

from proto import xds

Header = tuple[bytes, bytes]


class HeaderEdit:
    """One or more levels of operations applied in order, each as one pass over the header list."""

    __slots__ = ("levels",)

    def __init__(self, operations: list[xds.HeaderOperations]) -> None:
        levels = []
        for ops in operations:
            drop = frozenset(n.encode("latin-1") for n in [*ops.remove, *ops.set])
            extra = tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in [*ops.set.items(), *ops.add.items()])
            levels.append((drop, extra))
        self.levels = tuple(levels)

    def apply(self, headers: list[Header]) -> list[Header]:
        for drop, extra in self.levels:
            if drop:
                headers = [h for h in headers if h[0] not in drop]
            else:
                headers = list(headers)
            headers += extra
        return headers


def _edit(*ops: xds.HeaderOperations | None) -> HeaderEdit | None:
    present = [o for o in ops if o is not None and (o.set or o.add or o.remove)]
    return HeaderEdit(present) if present else None


def edits(destination: xds.Headers | None, rule: xds.Headers | None) -> tuple[HeaderEdit | None, HeaderEdit | None]:
    """(request edit, response edit) for a destination of a rule; None where there is nothing to do."""
    return (_edit(destination.request if destination else None, rule.request if rule else None),
            _edit(destination.response if destination else None, rule.response if rule else None))

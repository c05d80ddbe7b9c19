"""Bounds on what one config submission may expand to, checked before anything is built from it.

    check_yaml(text, loader, limits)     walks the YAML event stream (no objects are built)
    check_tree(value, limits)            walks an already parsed JSON value, iteratively
    -> raises LimitExceeded(document, path, message) naming the limit and its setting

The event pass also refuses what PyYAML would build wrongly or not at all: a mapping key defined
twice (PyYAML keeps the last silently; go-yaml v3 and the Kubernetes API server refuse it: "mapping
key already defined") and a decimal integer longer than Python converts (4300 digits), each with
its path. Pilot (services/pilot/validate/decode.py) and the CLI (isthmus/manifests.py) both read
submissions through runtime/documents.py, which applies these checks.

A YAML alias is cheap to write and costly to expand: "billion laughs" nests aliases so that a few
kilobytes stand for a billion nodes. PyYAML shares the aliased object instead of copying it, so
parsing is quick, but everything that walks the result afterwards (validation, msgspec, the
compiler, the push) pays for every expanded node. The event pass here computes the expanded size of
every anchored node once (size = 1 + the sizes of its children, an alias adds its anchor's size), so
a billion-node expansion is refused after a few hundred events. Aliases are also refused as
"excessive" by go-yaml's rule (yaml/go-yaml decode.go, allowedAliasRatio): once more than 100 nodes
came from aliases and 1000 were decoded, aliases may make up at most 99% of the nodes of a small
submission, scaling down to 10% at four million nodes. An alias to a node that contains it (a
recursive structure) is refused outright.
"""

from __future__ import annotations

import re
from typing import Any

from runtime.settings import ConfigLimits

MAX_INT_DIGITS = 4300  # Python's int_max_str_digits: a longer decimal integer cannot even be converted
_DECIMAL = re.compile(r"[-+]?[0-9][0-9_]*")

_ALIAS_RATIO_LOW = 400_000  # go-yaml's alias_ratio_range_low
_ALIAS_RATIO_HIGH = 4_000_000  # alias_ratio_range_high


class LimitExceeded(Exception):
    def __init__(self, document: int, path: str, message: str) -> None:
        super().__init__(message)
        self.document = document
        self.path = path
        self.message = message


def allowed_alias_ratio(decoded: int) -> float:
    """The share of nodes aliases may contribute (go-yaml's allowedAliasRatio)."""
    if decoded <= _ALIAS_RATIO_LOW:
        return 0.99
    if decoded >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decoded - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


class _Frame:
    """An open list or mapping in the event stream."""

    __slots__ = ("is_map", "children", "key", "anchor", "size", "height", "keys")

    def __init__(self, is_map: bool, anchor: str | None) -> None:
        self.is_map = is_map
        self.children = 0  # nodes directly below: a mapping counts keys and values
        self.key = ""  # the mapping's current key, for paths
        self.anchor = anchor
        self.size = 1  # expanded nodes in this subtree, itself included
        self.height = 1  # levels of nesting in this subtree (a scalar has 0)
        self.keys: set[str] | None = set() if is_map else None  # scalar keys seen, for duplicates


class _Counter:
    def __init__(self, limits: ConfigLimits) -> None:
        self.limits = limits
        self.document = 0
        self.nodes = 0
        self.alias_nodes = 0
        self.frames: list[_Frame] = []

    def fail(self, message: str) -> LimitExceeded:
        path = self.path()
        return LimitExceeded(self.document, path if len(path) <= 200 else path[:200] + "...", message)

    def path(self) -> str:
        out = ""
        for frame in self.frames:
            if frame.is_map:
                if frame.children % 2 == 1:  # between a key and its value
                    out += f".{frame.key}" if out else frame.key
            else:
                out += f"[{frame.children}]"
        return out

    def start_document(self) -> None:
        self.document += 1
        if self.document > self.limits.max_documents:
            raise LimitExceeded(self.document, "", f"more than {self.limits.max_documents} documents in one "
                                                   "submission (ISTHMUS_CONFIG_MAX_DOCUMENTS)")

    def _count(self, nodes: int) -> None:
        self.nodes += nodes
        if self.nodes > self.limits.max_nodes:
            raise self.fail(f"the submission expands to more than {self.limits.max_nodes} nodes "
                            "(ISTHMUS_CONFIG_MAX_NODES)")

    def _join(self, size: int, height: int, key: str) -> None:
        """A finished node of `size` expanded nodes and `height` levels joins the open collection."""
        if not self.frames:
            return
        parent = self.frames[-1]
        if parent.is_map:
            if parent.children % 2 == 0:
                if parent.children // 2 + 1 > self.limits.max_items:
                    raise self.fail(f"more than {self.limits.max_items} entries in one mapping "
                                    "(ISTHMUS_CONFIG_MAX_ITEMS)")
                parent.key = key
        elif parent.children + 1 > self.limits.max_items:
            raise self.fail(f"more than {self.limits.max_items} items in one list (ISTHMUS_CONFIG_MAX_ITEMS)")
        parent.children += 1
        parent.size += size
        parent.height = max(parent.height, height + 1)

    def scalar(self, value: str, plain: bool) -> None:
        self._count(1)
        parent = self.frames[-1] if self.frames else None
        is_key = parent is not None and parent.is_map and parent.children % 2 == 0
        if plain and len(value) > MAX_INT_DIGITS and _DECIMAL.fullmatch(value):
            where = self.path() + (f".{value[:20]}..." if is_key else "")
            raise LimitExceeded(self.document, where, f"integer too large (more than {MAX_INT_DIGITS} digits)")
        if is_key and parent is not None and parent.keys is not None:
            if value in parent.keys:  # go-yaml v3 and Kubernetes refuse it; PyYAML keeps the last silently
                path = self.path()
                raise LimitExceeded(self.document, f"{path}.{value[:64]}" if path else value[:64],
                                    f"mapping key {value[:64]!r} already defined")
            parent.keys.add(value)
        self._join(1, 0, value[:64])

    def open(self, is_map: bool, anchor: str | None) -> None:
        if len(self.frames) + 1 > self.limits.max_depth:
            raise self.fail(f"nesting deeper than {self.limits.max_depth} levels (ISTHMUS_CONFIG_MAX_DEPTH)")
        self.frames.append(_Frame(is_map, anchor))

    def close(self) -> _Frame:
        frame = self.frames.pop()
        self._count(1)  # the collection itself; its children were counted as they came
        self._join(frame.size, frame.height, "?")  # a collection as a key is rejected later by shape
        return frame

    def alias(self, anchor: str, size: int, height: int) -> None:
        self.alias_nodes += size
        decoded = self.nodes + size
        if (self.alias_nodes > 100 and decoded > 1000
                and self.alias_nodes / decoded > allowed_alias_ratio(decoded)):
            raise self.fail("the document contains excessive aliasing: "
                            f"{self.alias_nodes} of {decoded} nodes come from aliases (go-yaml's rule)")
        if len(self.frames) + height > self.limits.max_depth:
            raise self.fail(f"nesting deeper than {self.limits.max_depth} levels (ISTHMUS_CONFIG_MAX_DEPTH)")
        self._count(size)
        self._join(size, height, f"*{anchor}")


def check_yaml(text: str, loader: type, limits: ConfigLimits) -> None:
    """Raise LimitExceeded if the YAML stream in `text` exceeds a limit. Syntax errors are left to
    the parser that builds the documents afterwards (it reports them with line and column)."""
    import yaml

    if len(text) > limits.max_bytes:  # characters <= bytes: the byte check is the caller's
        raise LimitExceeded(0, "", f"the submission is larger than {limits.max_bytes} bytes "
                                   "(ISTHMUS_CONFIG_MAX_BYTES)")
    counter = _Counter(limits)
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded size, height) of its node
    open_anchors: set[str] = set()
    events = loader(text)
    try:
        while True:
            try:
                event = events.get_event()
            except yaml.YAMLError:
                return  # the building parser reports it
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            if isinstance(event, yaml.DocumentStartEvent):
                counter.start_document()
                anchors.clear()
            elif isinstance(event, yaml.ScalarEvent):
                counter.scalar(event.value, bool(event.implicit[0]) or event.tag == "tag:yaml.org,2002:int")
                if event.anchor:
                    anchors[event.anchor] = (1, 0)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                counter.open(isinstance(event, yaml.MappingStartEvent), event.anchor)
                if event.anchor:
                    open_anchors.add(event.anchor)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                frame = counter.close()
                if frame.anchor:
                    open_anchors.discard(frame.anchor)
                    anchors[frame.anchor] = (frame.size, frame.height)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    raise counter.fail(f"the alias *{event.anchor} refers to a node that contains it "
                                       "(a recursive structure)")
                size, height = anchors.get(event.anchor, (1, 0))  # undefined: the parser reports it
                counter.alias(event.anchor, size, height)
    finally:
        events.dispose()


def check_tree(value: Any, limits: ConfigLimits, document: int = 1) -> None:
    """The same limits for a parsed JSON value (JSON has no aliases), walked without recursion.
    Paths are kept as (parent, key) links and spelled out only for an error."""
    nodes = 0
    stack: list[tuple[Any, Any, int]] = [(value, None, 0)]
    while stack:
        node, link, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise LimitExceeded(document, _spell(link), f"the submission has more than {limits.max_nodes} "
                                                        "nodes (ISTHMUS_CONFIG_MAX_NODES)")
        if isinstance(node, dict):
            what = "entries in one mapping"
        elif isinstance(node, list):
            what = "items in one list"
        else:
            continue
        if depth + 1 > limits.max_depth:
            raise LimitExceeded(document, _spell(link), f"nesting deeper than {limits.max_depth} levels "
                                                        "(ISTHMUS_CONFIG_MAX_DEPTH)")
        if len(node) > limits.max_items:
            raise LimitExceeded(document, _spell(link), f"more than {limits.max_items} {what} "
                                                        "(ISTHMUS_CONFIG_MAX_ITEMS)")
        if isinstance(node, dict):
            nodes += len(node)  # mapping keys are nodes too, as in YAML
            stack.extend((child, (link, str(key)), depth + 1) for key, child in node.items())
        else:
            stack.extend((child, (link, index), depth + 1) for index, child in enumerate(node))


def _spell(link: Any) -> str:
    parts: list[str | int] = []
    while link is not None:
        link, key = link
        parts.append(key)
    out = ""
    for key in reversed(parts):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out

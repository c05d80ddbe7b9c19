"""Istio StringMatch (exact, prefix, regex) compiled once into a predicate on a string."""

from __future__ import annotations

import re
from collections.abc import Callable

from proto.xds import StringMatch

Matcher = Callable[[str], bool]


def _present(value: str) -> bool:
    return True


def string_matcher(sm: StringMatch, ignore_case: bool = False, allow_presence: bool = False) -> Matcher:
    """Raises ValueError for an empty match (unless `allow_presence`) or a regex that does not compile."""
    if sm.exact is not None:
        exact = sm.exact
        if ignore_case:
            folded = exact.lower()
            return lambda value: value.lower() == folded
        return lambda value: value == exact
    if sm.prefix is not None:
        prefix = sm.prefix
        if ignore_case:
            folded = prefix.lower()
            return lambda value: value.lower().startswith(folded)
        return lambda value: value.startswith(prefix)
    if sm.regex is not None:
        try:
            pattern = re.compile(sm.regex)
        except re.error as exc:
            raise ValueError(f"regex {sm.regex!r} does not compile: {exc}") from exc
        return lambda value: pattern.fullmatch(value) is not None
    if allow_presence:
        return _present
    raise ValueError("a string match needs one of exact, prefix or regex")

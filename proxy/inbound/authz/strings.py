"""Istio's string values in AuthorizationPolicy, compiled once into one predicate per list of values.

A value is an exact match, a prefix match (`abc*`), a suffix match (`*abc`) or a presence match (`*`),
as istio's pilot/pkg/security/authz/matcher/string.go (StringMatcherWithPrefix) turns it into an Envoy
StringMatcher: `*` becomes the regex `.+` (any non-empty value), so "present" never matches "" here;
header matchers (matcher/header.go) turn `*` into present_match instead (see `presence_matches_empty`).

    values_matcher(values, ignore_case=False) -> (str -> bool)   True when any value matches
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Matcher = Callable[[str], bool]


def _never(value: str) -> bool:
    return False


def _non_empty(value: str) -> bool:
    return value != ""


def _always(value: str) -> bool:
    return True


def exact_values(values: Sequence[str]) -> frozenset[str] | None:
    """The values as a set when all are exact (no `*`): a leaf can then test membership inline."""
    return None if any("*" in v for v in values) else frozenset(values)


def values_matcher(values: Sequence[str], ignore_case: bool = False, presence_matches_empty: bool = False) -> Matcher:
    """One predicate for `values` ORed: a set lookup for the exact ones, one startswith / endswith call with a
    tuple for the prefixes / suffixes. `ignore_case` (hosts): values and the input are lower-cased.
    `presence_matches_empty`: `*` is Envoy's present_match (a header that is there, even empty)."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    presence = False
    for raw in values:
        value = raw.lower() if ignore_case else raw
        if value == "*":
            presence = True
        elif value.startswith("*"):
            suffixes.append(value[1:])
        elif value.endswith("*"):
            prefixes.append(value[:-1])
        else:
            exact.add(value)
    if presence:
        return _always if presence_matches_empty else _non_empty
    frozen, pre, suf = frozenset(exact), tuple(prefixes), tuple(suffixes)
    if not pre and not suf:
        if not frozen:
            return _never
        if len(frozen) == 1:
            (only,) = frozen
            if ignore_case:
                return lambda value: value.lower() == only
            return lambda value: value == only
        if ignore_case:
            return lambda value: value.lower() in frozen
        return frozen.__contains__
    if ignore_case:
        return lambda value: ((folded := value.lower()) in frozen or folded.startswith(pre)
                              or folded.endswith(suf))
    return lambda value: value in frozen or value.startswith(pre) or value.endswith(suf)

"""Structural check of one decoded document against its msgspec schema, reporting every problem.

msgspec.convert stops at the first mismatch; a user fixing a file wants them all. `check_shape` walks
the plain data (dicts, lists, scalars from YAML/JSON) alongside `msgspec.inspect.type_info` of the
target Struct and returns `(path, message)` pairs with camelCase paths as the user wrote them
(`spec.http[0].route[1].weight`). When it finds nothing, msgspec.convert is expected to succeed;
`from_msgspec_error` translates its error anyway, should the two ever disagree.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Any

import msgspec
import msgspec.inspect as mi

Problem = tuple[str, str]


@lru_cache(maxsize=None)
def type_info(cls: type) -> mi.Type:
    return mi.type_info(cls)


def check_shape(value: Any, cls: type, path: str = "") -> list[Problem]:
    problems: list[Problem] = []
    _check(value, type_info(cls), path, problems)
    return problems


def unknown_field_message(key: str, known: list[str] | None = None) -> str:
    hint = ""
    close = difflib.get_close_matches(key, known or [], n=1)
    if close:
        hint = f"; did you mean `{close[0]}`?"
    return f"field `{key}` is not supported by Isthmus yet (or is misspelled{hint})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(value: Any, t: mi.Type, path: str, out: list[Problem]) -> None:
    if isinstance(t, mi.AnyType):
        return
    if isinstance(t, mi.UnionType):
        if value is None and any(isinstance(x, mi.NoneType) for x in t.types):
            return
        options = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if len(options) == 1:
            _check(value, options[0], path, out)
            return
        for option in options:
            trial: list[Problem] = []
            _check(value, option, path, trial)
            if not trial:
                return
        out.append((path, f"expected {' or '.join(_describe(x) for x in options)}, got {_describe_value(value)}"))
        return
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            out.append((path, f"expected an object, got {_describe_value(value)}"))
            return
        fields = {f.encode_name: f for f in t.fields}
        for key in value:
            if key not in fields:
                out.append((_join(path, str(key)), unknown_field_message(str(key), list(fields))))
        for name, field in fields.items():
            if name in value:
                _check(value[name], field.type, _join(path, name), out)
            elif field.required:
                out.append((_join(path, name), f"field `{name}` is required"))
        return
    if isinstance(t, mi.ListType):
        if not isinstance(value, list):
            out.append((path, f"expected a list, got {_describe_value(value)}"))
            return
        for i, item in enumerate(value):
            _check(item, t.item_type, f"{path}[{i}]", out)
        return
    if isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            out.append((path, f"expected an object (a map), got {_describe_value(value)}"))
            return
        numbered = isinstance(t.key_type, mi.IntType)  # e.g. portLevelMtls (the kind's normalizer made them ints)
        for key, item in value.items():
            if numbered and (not isinstance(key, int) or isinstance(key, bool)):
                out.append((f"{path}[{key}]", f"keys must be numbers, got {_describe_value(key)}"))
                continue
            if not numbered and not isinstance(key, str):
                out.append((f"{path}[{key}]", f"keys must be strings, got {_describe_value(key)}"))
                continue
            _check(item, t.value_type, f"{path}[{key}]", out)
        return
    if not _scalar_ok(value, t):
        out.append((path, f"expected {_describe(t)}, got {_describe_value(value)}"))


def _scalar_ok(value: Any, t: mi.Type) -> bool:
    if isinstance(t, mi.StrType):
        return isinstance(value, str)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(t, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(t, mi.NoneType):
        return value is None
    return True  # a type this walker does not know: leave it to msgspec.convert


def _describe(t: mi.Type) -> str:
    names = {mi.StrType: "a string", mi.IntType: "an integer", mi.BoolType: "a boolean",
             mi.FloatType: "a number", mi.ListType: "a list", mi.DictType: "an object (a map)",
             mi.StructType: "an object", mi.NoneType: "null"}
    return names.get(type(t), type(t).__name__)


def _describe_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'a string ("{shown}")'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def from_msgspec_error(exc: msgspec.ValidationError, prefix: str = "") -> Problem:
    """`Expected `int | null`, got `str` - at `$.spec.x`` -> ("spec.x", "expected `int | null`, got `str`")."""
    found = _MSGSPEC_PATH.match(str(exc))
    message = found.group("message") if found else str(exc)
    path = (found.group("path") or "").lstrip(".") if found else ""
    for pattern, fmt in ((_UNKNOWN, None), (_MISSING, "field `{}` is required")):
        hit = pattern.match(message)
        if hit:
            path = _join(path, hit.group("field"))
            message = fmt.format(hit.group("field")) if fmt else unknown_field_message(hit.group("field"))
            break
    else:
        message = message[:1].lower() + message[1:]
    if prefix:
        path = _join(prefix, path) if path and not path.startswith("[") else prefix + path
    return path, message

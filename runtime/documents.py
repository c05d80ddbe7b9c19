"""Reading a YAML/JSON config submission into plain documents, within ConfigLimits.

    parse_documents(text, limits) -> [document, ...]
    -> raises LimitExceeded(document, path, message)   a bound, a duplicate key, an oversized integer
       (runtime/doc_limits.py)
    -> raises DocumentError(document, message)         a syntax error, with line and column

Shared by pilot's validation (services/pilot/validate/decode.py) and the CLI (`isthmus delete -f`
reads names locally), so neither builds anything from a hostile document before it is bounded:
nesting, size, aliases and numbers are checked on the event stream first, and no reader recurses
without a bound. Documents are numbered from 1; 0 means the submission as a whole.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from runtime.doc_limits import LimitExceeded, check_tree, check_yaml
from runtime.settings import ConfigLimits

__all__ = ["DocumentError", "LimitExceeded", "YamlLoader", "parse_documents"]

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe YAML without implicit timestamps: `creationTimestamp: 2024-01-01T00:00:00Z` stays a string."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class DocumentError(Exception):
    """A document that is not valid YAML/JSON; `document` is its 1-based position."""

    def __init__(self, document: int, message: str) -> None:
        super().__init__(message)
        self.document = document
        self.message = message


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")  # the YAML pass below names it with its path
    return out


def parse_documents(text: str, limits: ConfigLimits) -> list[Any]:
    """The documents of `text` (a JSON value counts as one document; None for an empty document)."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(text, object_pairs_hook=_unique_pairs)
        except RecursionError:
            raise LimitExceeded(1, "", f"nesting deeper than {limits.max_depth} levels "
                                       "(ISTHMUS_CONFIG_MAX_DEPTH)") from None
        except ValueError:
            value = None  # YAML flow style, broken JSON, a duplicate key, a huge number: the YAML pass reports it
        else:
            check_tree(value, limits)
            return [value]
    check_yaml(text, YamlLoader, limits)
    docs: list[Any] = []
    try:
        for doc in yaml.load_all(text, Loader=YamlLoader):
            docs.append(doc)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError(len(docs) + 1, f"YAML syntax error{where}: {problem}") from exc
    except (RecursionError, ValueError, OverflowError) as exc:  # what the event pass did not foresee
        raise DocumentError(len(docs) + 1, f"the document cannot be read: {str(exc)[:200]}") from None
    return docs

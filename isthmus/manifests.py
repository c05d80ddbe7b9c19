"""Reading what `-f` names (files, directories, stdin) into one YAML stream, and the resource refs in it."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from isthmus.errors import CliError
from proto.config_api import ResourceRef
from proto.resources import KINDS, kind_from_alias
from runtime.documents import DocumentError, LimitExceeded, parse_documents
from runtime.settings import ConfigLimits

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DOCUMENT_SEPARATOR = "\n---\n"


def read_manifests(sources: Sequence[str], stdin: TextIO | None = None) -> list[tuple[str, str]]:
    """(name, text) for every -f source, in order: a file, a directory (its *.yaml, *.yml, *.json,
    sorted, not recursive) or `-` (stdin, read once). Each source is read up to pilot's size limit
    (ISTHMUS_CONFIG_MAX_BYTES, 3 MiB): a larger one is refused without reading the rest, so
    `-f /dev/zero` style sources cannot make the CLI hold unbounded memory. Raises CliError for a
    missing path, a path that is not a regular file or directory, and a source over the limit."""
    limit = _limits().max_bytes
    out: list[tuple[str, str]] = []
    for source in sources:
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin
            text = stream.read(limit + 1)
            if len(text.encode("utf-8", "surrogatepass")) > limit:
                raise CliError(_too_large("<stdin>", limit))
            out.append(("<stdin>", text))
            continue
        path = Path(source)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in MANIFEST_SUFFIXES:
                    out.append((str(child), _read_text(child, limit)))
        elif path.is_file():
            out.append((str(path), _read_text(path, limit)))
        elif path.exists():
            raise CliError(f"the path {source!r} is not a regular file or a directory")
        else:
            raise CliError(f"the path {source!r} does not exist")
    return out


def _limits() -> ConfigLimits:
    """Pilot's bounds, from the same ISTHMUS_CONFIG_* variables; a bad value is one error line."""
    try:
        return ConfigLimits.from_env()
    except ValueError as exc:
        raise CliError(f"bad setting: {exc}") from None


def _too_large(name: str, limit: int) -> str:
    return f"{name} is larger than {limit} bytes, more than pilot accepts (ISTHMUS_CONFIG_MAX_BYTES)"


def _read_text(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise CliError(_too_large(str(path), limit))
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc


def join_documents(texts: Iterable[str]) -> str:
    """One multi-document stream, so a submission is applied all-or-nothing in one request.

    Blank sources are skipped; each source's own `---` separators are kept, except a leading one
    (it only opens the first document, and kept after our separator it would add an empty document
    and shift the document numbers in error messages).
    """
    parts = [_drop_leading_marker(text).strip("\n") for text in texts if text.strip()]
    return DOCUMENT_SEPARATOR.join(parts) + ("\n" if parts else "")


def _drop_leading_marker(text: str) -> str:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped == "---":
            return "".join(lines[:i] + lines[i + 1:])
        break
    return text


def resolve_kind(text: str) -> str:
    """`vs`, `VirtualServices`, `dr`, ... -> the canonical kind; CliError listing the kinds otherwise."""
    kind = kind_from_alias(text)
    if kind is None:
        known = ", ".join(f"{k} ({'/'.join(info.aliases[-1:])})" for k, info in KINDS.items())
        raise CliError(f"unknown resource kind {text!r}; known kinds: {known}")
    return kind


def collect_refs(sources: Sequence[tuple[str, str]]) -> list[ResourceRef]:
    """The (kind, name, namespace) of every document, parsed locally within pilot's bounds (ConfigLimits
    from the ISTHMUS_CONFIG_* environment, read by runtime/documents.py as pilot reads them).
    `kind: List` documents and JSON arrays contribute their items. Raises CliError naming the source and document."""
    refs: list[ResourceRef] = []
    limits = _limits()
    for name, text in sources:
        try:
            documents = parse_documents(text, limits)
        except DocumentError as exc:
            raise CliError(f"{name}: document {exc.document}: not valid YAML/JSON: {exc.message}") from None
        except LimitExceeded as exc:
            where = f"document {exc.document}: " if exc.document else ""
            path = f"{exc.path}: " if exc.path else ""
            raise CliError(f"{name}: {where}{path}{exc.message}") from None
        for index, doc in enumerate(documents, start=1):
            if doc is None:
                continue
            if isinstance(doc, list):  # a JSON array of resources
                items = doc
            elif isinstance(doc, dict) and doc.get("kind") == "List":
                items = doc.get("items")
            else:
                items = [doc]
            for item in items or []:
                refs.append(_ref_of(item, f"{name}: document {index}"))
    return refs


def _ref_of(doc: Any, where: str) -> ResourceRef:
    if not isinstance(doc, dict):
        raise CliError(f"{where}: expected a mapping with kind and metadata")
    kind_text = doc.get("kind")
    if not isinstance(kind_text, str) or not kind_text:
        raise CliError(f"{where}: kind is missing")
    kind = kind_from_alias(kind_text)
    if kind is None:
        raise CliError(f"{where}: unknown resource kind {kind_text!r}")
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise CliError(f"{where}: metadata.name is missing")
    namespace = meta.get("namespace") or "default"
    return ResourceRef(kind=kind, name=name, namespace=str(namespace))

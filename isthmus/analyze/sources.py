"""Where analysis reads from: the files given with -f, and the live mesh over the bus.

    read_files([(name, text)], namespace) -> Files(entries, documents, local_errors, parse_errors)
    await read_live(bus, timeout, files) -> Inputs      (files laid over the live config; `available` says what
                                                        was read)
    offline(files) -> Inputs                            (--no-live: the files alone, schema from proto/ only)

Documents are decoded with the resource structs of proto/ (msgspec), as pilot decodes them; a document naming no
namespace gets -n's. Live data: the config (config.get for every kind, every namespace: a reference may cross
namespaces; messages are filtered by namespace afterwards), the registry's workloads (registry.list: the
services and endpoints of the mesh), the ca's secret list (ca.secret.list, the `isthmus get secrets` path) and
pilot's validation of the files (config.validate, apply's checks with nothing stored). A source that does not
answer is left out of `available`: the analyzers that need it are skipped, and the CLI says so.
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec

from isthmus.analyze.context import Entry, Inputs
from proto.config_api import ApplyReply, ConfigError, GetReply, GetRequest
from proto.registry import WorkloadListReply, WorkloadListRequest
from proto.resources import KINDS, kind_from_alias
from proto.secrets import SecretListReply, SecretListRequest
from proto.subjects import CA_SECRET_LIST, CONFIG_GET, CONFIG_VALIDATE, REGISTRY_LIST
from runtime.documents import DocumentError, LimitExceeded, parse_documents
from runtime.settings import ConfigLimits


class Files(msgspec.Struct):
    entries: list[Entry] = []
    documents: list[tuple[str, list[dict[str, Any]]]] = []  # per file: its documents, namespaces filled in
    local_errors: list[tuple[str, ConfigError, bool]] = []  # what decoding against proto/ found
    parse_errors: list[str] = []  # files that are not YAML/JSON at all


def read_files(sources: list[tuple[str, str]], namespace: str, limits: ConfigLimits | None = None) -> Files:
    """Decode every document of every source; a document that does not decode is left out of the entries and
    recorded as a local error (IST0106 when pilot cannot be asked)."""
    limits = limits or ConfigLimits.from_env()
    out = Files(entries=[], documents=[], local_errors=[], parse_errors=[])
    for name, text in sources:
        try:
            raw = parse_documents(text, limits)
        except (DocumentError, LimitExceeded) as exc:
            out.parse_errors.append(f"{name}: document {exc.document}: {exc.message}")
            continue
        docs: list[dict[str, Any]] = []
        for doc in raw:
            items = doc if isinstance(doc, list) else (doc.get("items") or [] if isinstance(doc, dict)
                                                       and doc.get("kind") == "List" else [doc])
            for item in items:
                if item is None:
                    continue
                if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
                    item["metadata"].setdefault("namespace", namespace)
                    if item["metadata"]["namespace"] in (None, ""):
                        item["metadata"]["namespace"] = namespace
                docs.append(item)
        out.documents.append((name, docs))
        for index, item in enumerate(docs, 1):
            entry, error = decode(item, index)
            if entry is not None:
                out.entries.append(Entry(resource=entry, origin=name))
            else:
                out.local_errors.append((name, error, True))
    return out


def decode(item: Any, index: int) -> tuple[Any, ConfigError]:
    """(the typed resource, None) or (None, why not)."""
    if not isinstance(item, dict):
        return None, ConfigError(document=index, message="expected a mapping with apiVersion, kind and metadata")
    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    kind_text = str(item.get("kind") or "")
    kind = kind_from_alias(kind_text)
    name, ns = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    if kind is None:
        return None, ConfigError(document=index, kind=kind_text, name=name, namespace=ns, path="kind",
                                 message=f"unknown kind {kind_text!r}; supported kinds: {', '.join(KINDS)}")
    try:
        return msgspec.convert({**item, "kind": kind}, KINDS[kind].type), ConfigError(document=index, message="")
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in text else ""
        return None, ConfigError(document=index, kind=kind, name=name, namespace=ns, path=path,
                                 message=text.rsplit(" - at `$", 1)[0])


def overlay(live: list[Entry], files: list[Entry]) -> list[Entry]:
    """The live config with the files' resources added, a file's replacing the live one of the same name
    (istioctl: "simulating the effect of applying additional yaml files"); of two documents naming the same
    resource, the later one, as applying the files one after another would leave it."""
    keyed = {(e.kind, e.namespace, e.name): e for e in live}
    keyed.update(((e.kind, e.namespace, e.name), e) for e in files)
    return list(keyed.values())


def root_namespace() -> str:
    """Where mesh-wide policies live: ISTHMUS_ROOT_NAMESPACE, as pilot reads it (runtime/settings.py)."""
    return os.environ.get("ISTHMUS_ROOT_NAMESPACE", "istio-system")


def offline(files: Files) -> Inputs:
    return Inputs(resources=overlay([], files.entries), validation=files.local_errors, available={"config"},
                  root_namespace=root_namespace())


async def read_live(bus: Any, timeout: float, files: Files, notes: list[str]) -> Inputs:
    """Everything the analyzers may need, read over `bus`; `notes` gets a line per source that did not answer.
    Raises the bus's errors for the config itself (pilot must answer: the live config is what is analyzed)."""
    from runtime.bus import BusError

    live: list[Entry] = []
    unreadable = 0
    for kind, info in KINDS.items():
        reply = await bus.call(CONFIG_GET, GetRequest(kind=kind), GetReply, timeout)
        if not reply.ok:
            raise BusError(f"pilot could not list {kind}: {reply.error}")
        for document in reply.resources:
            document.pop("status", None)
            (document.get("metadata") or {}).pop("resourceVersion", None)
            try:
                live.append(Entry(resource=msgspec.convert(document, info.type)))
            except msgspec.ValidationError:
                unreadable += 1
    if unreadable:
        notes.append(f"{unreadable} stored resources could not be read and were left out (`isthmus get` shows them)")
    inputs = Inputs(resources=overlay(live, files.entries), available={"config"}, root_namespace=root_namespace())
    try:
        workloads = await bus.call(REGISTRY_LIST, WorkloadListRequest(), WorkloadListReply, timeout)
        if workloads.ok and workloads.total <= len(workloads.workloads):
            inputs.workloads = workloads.workloads
            inputs.available.add("registry")
        else:
            notes.append(f"the registry's list is incomplete ({workloads.error or 'too many workloads'}): analyzers "
                         "that need the registry were skipped")
    except BusError as exc:
        notes.append(f"the registry did not answer ({exc}): analyzers that need it were skipped")
    try:
        secrets = await bus.call(CA_SECRET_LIST, SecretListRequest(limit=10_000), SecretListReply, timeout)
        if secrets.ok and secrets.total <= len(secrets.secrets):
            inputs.secrets = {(s.namespace, s.name) for s in secrets.secrets}
            inputs.available.add("secrets")
        else:
            notes.append(f"the ca's secret list is incomplete ({secrets.error or 'too many secrets'}): the "
                         "credentialName check was skipped")
    except BusError as exc:
        notes.append(f"the ca did not answer ({exc}): the credentialName check was skipped")
    inputs.validation = await _validate(bus, timeout, files, notes)
    return inputs


async def _validate(bus: Any, timeout: float, files: Files, notes: list[str]) -> list[tuple[str, ConfigError, bool]]:
    """Pilot's validation of each file (config.validate); the local decode errors of a file pilot could not check."""
    from runtime.bus import BusError, decode as decode_reply

    found: list[tuple[str, ConfigError, bool]] = []
    for name, docs in files.documents:
        if not docs:
            continue
        payload = "\n---\n".join(json.dumps(doc) for doc in docs).encode()
        try:
            reply = decode_reply(await bus.request(CONFIG_VALIDATE, payload, timeout), ApplyReply)
        except BusError as exc:
            notes.append(f"pilot could not validate {name} ({exc}): its schema errors are from the local decode only")
            found += [e for e in files.local_errors if e[0] == name]
            continue
        if reply.error:
            notes.append(f"pilot could not validate {name}: {reply.error}")
            found += [e for e in files.local_errors if e[0] == name]
            continue
        found += [(name, e, True) for e in reply.errors] + [(name, w, False) for w in reply.warnings]
    return found

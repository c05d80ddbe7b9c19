"""Decode and validate submitted config: YAML or JSON text in, typed resources plus every problem out.

    decode_documents(text) -> (resources, errors, warnings)

One submission may hold many documents (`---`), a Kubernetes `kind: List` with `items`, or a JSON
array. Each document is checked in three passes, and each pass reports all it finds:
  1. envelope: a mapping with a supported `apiVersion` (<group>/<version>), a known `kind` and
     `metadata.name`;
  2. shape: every field against the msgspec schema (schema.py), so an unsupported field is an
     error with its path instead of being ignored;
  3. semantics: Istio's validation rules, one module per kind (virtual_service.py, destination_rule.py,
     service_entry.py, workload_entry.py, workload_group.py, ratelimit.py, peer_authentication.py,
     authorization_policy.py, request_authentication.py, telemetry.py, gateway.py).
Before any of that, the submission is held to ConfigLimits (size, documents, nesting, items,
expanded nodes, aliasing, duplicate keys, integers too long to read: runtime/doc_limits.py, read
by runtime/documents.py, which the CLI shares); a submission over a limit gets one error
naming it and nothing is built from it. A document with errors is never returned in `resources`; the caller rejects the whole submission when
`errors` is not empty. ConfigError.document is the 1-based position of the document in the stream
(a List's items share their List's position, and their paths start with `items[i]`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proto.config_api import ConfigError
from proto.resources import KINDS, Resource, kind_from_alias
from runtime.documents import DocumentError, LimitExceeded, parse_documents
from runtime.settings import ConfigLimits
from services.pilot.validate.checks import DNS1123_LABEL, DNS1123_SUBDOMAIN
from services.pilot.validate.authorization_policy import authorization_policy
from services.pilot.validate.destination_rule import destination_rule
from services.pilot.validate.findings import Findings
from services.pilot.validate.gateway import gateway
from services.pilot.validate.peer_authentication import normalize as normalize_peer_authentication
from services.pilot.validate.peer_authentication import peer_authentication
from services.pilot.validate.ratelimit import rate_limit
from services.pilot.validate.request_authentication import request_authentication
from services.pilot.validate.schema import check_shape, from_msgspec_error
from services.pilot.validate.service_entry import service_entry
from services.pilot.validate.telemetry import telemetry
from services.pilot.validate.virtual_service import virtual_service
from services.pilot.validate.workload_entry import workload_entry
from services.pilot.validate.workload_group import workload_group

VALIDATORS = {
    "VirtualService": virtual_service,
    "DestinationRule": destination_rule,
    "ServiceEntry": service_entry,
    "WorkloadEntry": workload_entry,
    "WorkloadGroup": workload_group,
    "RateLimit": rate_limit,
    "PeerAuthentication": peer_authentication,
    "AuthorizationPolicy": authorization_policy,
    "RequestAuthentication": request_authentication,
    "Telemetry": telemetry,
    "Gateway": gateway,
}
# what a kind's document needs before its shape is checked (YAML's `8080:` map keys read as numbers)
NORMALIZERS = {"PeerAuthentication": normalize_peer_authentication}
_ENVELOPE_PATHS = ("apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace")
def decode_documents(
    text: str, *, default_namespace: str = "default", limits: ConfigLimits | None = None
) -> tuple[list[Resource], list[ConfigError], list[ConfigError]]:
    """Typed resources, errors and warnings for a YAML/JSON submission; see the module docstring.
    `limits`: ConfigLimits() when None."""
    limits = limits or ConfigLimits()
    resources: list[Resource] = []
    errors: list[ConfigError] = []
    warnings: list[ConfigError] = []
    try:
        docs = parse_documents(text, limits)
    except DocumentError as exc:
        return [], [ConfigError(document=exc.document, message=exc.message)], []
    except LimitExceeded as exc:
        return [], [ConfigError(document=exc.document, path=exc.path, message=exc.message)], []
    if len(docs) == 1 and isinstance(docs[0], list):  # a JSON array of resources
        docs = [{"kind": "List", "items": docs[0]}]
    total = sum(len(d["items"]) if isinstance(d, dict) and d.get("kind") == "List"
                and isinstance(d.get("items"), list) else 1 for d in docs)
    if total > limits.max_documents:
        return [], [ConfigError(document=0, message=f"{total} resources in one submission, more than "
                                f"{limits.max_documents} (ISTHMUS_CONFIG_MAX_DOCUMENTS)")], []
    if all(doc is None for doc in docs):
        return [], [ConfigError(document=1, message="the submission holds no documents")], []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue  # an empty document, e.g. after a trailing `---`
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items = doc.get("items")
            if not isinstance(items, list):
                errors.append(ConfigError(document=index, path="items", message="a List needs `items`, a list"))
                continue
            for j, item in enumerate(items):
                found = _decode_one(item, Findings(index, prefix=f"items[{j}]"), default_namespace)
                _collect(found, resources, errors, warnings)
        else:
            _collect(_decode_one(doc, Findings(index), default_namespace), resources, errors, warnings)
    return resources, errors, warnings


def _collect(found: tuple[Findings, Resource | None], resources: list[Resource],
             errors: list[ConfigError], warnings: list[ConfigError]) -> None:
    findings, resource = found
    errors.extend(findings.errors)
    warnings.extend(findings.warnings)
    if resource is not None and not findings.errors:
        resources.append(resource)


def _decode_one(doc: Any, f: Findings, default_namespace: str) -> tuple[Findings, Resource | None]:
    if not isinstance(doc, dict):
        f.error("", f"a document must be an object (a mapping), got {type(doc).__name__}")
        return f, None
    kind, api_version, meta = doc.get("kind"), doc.get("apiVersion"), doc.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else meta
    if isinstance(meta, dict):
        if meta.get("namespace") in (None, ""):
            meta["namespace"] = default_namespace
        f.name = meta.get("name") if isinstance(meta.get("name"), str) else ""
        f.namespace = meta["namespace"] if isinstance(meta["namespace"], str) else ""
    info = _check_envelope(kind, api_version, meta, f)
    if info is None or not isinstance(meta, dict):
        return f, None
    body = {**doc, "metadata": meta}
    if info.kind in NORMALIZERS:
        body = NORMALIZERS[info.kind](body)
    if not isinstance(api_version, str):
        body["apiVersion"] = ""  # reported by the envelope check; keeps the shape and rule checks going
    for key in ("name", "namespace"):
        if not isinstance(meta.get(key), str):
            meta[key] = ""  # likewise
    if "status" in body:
        del body["status"]
        f.warn("status", "status is written by the server; it is ignored")
    shape = [p for p in check_shape(body, info.type) if p[0] not in _ENVELOPE_PATHS]  # envelope: reported
    for path, message in shape:
        f.error(path, message)
    if shape:
        return f, None
    try:
        resource = msgspec.convert(body, type=info.type)
    except msgspec.ValidationError as exc:  # the shape check should have caught it; translate anyway
        f.error(*from_msgspec_error(exc))
        return f, None
    VALIDATORS[info.kind](resource.spec, f)  # even after envelope errors: report everything at once
    return f, (resource if not f.errors else None)


def _check_envelope(kind: Any, api_version: Any, meta: Any, f: Findings) -> Any:
    """The KindInfo when `kind` is supported (even if other envelope fields are wrong), else None."""
    info = None
    if kind is None:
        f.error("kind", "kind is required")
    elif not isinstance(kind, str) or kind not in KINDS:
        alias = kind_from_alias(kind) if isinstance(kind, str) else None
        hint = f" (did you mean `{alias}`?)" if alias else ""
        f.error("kind", f"unknown kind `{kind}`{hint}; supported kinds: {', '.join(KINDS)}")
    else:
        info = KINDS[kind]
        f.kind = kind
    if api_version is None:
        f.error("apiVersion", "apiVersion is required, e.g. networking.istio.io/v1")
    elif not isinstance(api_version, str) or api_version.count("/") != 1:
        f.error("apiVersion", f"apiVersion `{api_version}` must be <group>/<version>, e.g. networking.istio.io/v1")
    elif info is not None:
        group, version = api_version.split("/")
        if group != info.group:
            f.error("apiVersion", f"{info.kind} belongs to API group {info.group}, not `{group}`")
        elif version not in info.versions:
            f.error("apiVersion", f"version `{version}` of {group} is not supported; use one of "
                                  f"{', '.join(info.versions)}")
    if not isinstance(meta, dict):
        f.error("metadata" if meta is not None else "metadata.name",
                "metadata must be an object" if meta is not None else "metadata.name is required")
        return info
    name, namespace = meta.get("name"), meta.get("namespace")
    if name is None or name == "":
        f.error("metadata.name", "metadata.name is required")
    elif not isinstance(name, str) or len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        f.error("metadata.name", f"name `{name}` is not a valid DNS-1123 subdomain "
                                 "(lower-case letters, digits, '-' and '.')")
    if not isinstance(namespace, str) or len(namespace) > 63 or not DNS1123_LABEL.match(namespace):
        f.error("metadata.namespace", f"namespace `{namespace}` is not a valid DNS-1123 label")
    return info

"""The config API (pilot) over NATS request/reply, and the change events it publishes."""

from __future__ import annotations

from typing import Any

from proto.base import Message

# A header of an `isthmus.config.apply` request: the namespace of documents that name none (kubectl's -n); a
# document naming another namespace is then refused, as kubectl refuses it. Absent: `default`.
NAMESPACE_HEADER = "Isthmus-Namespace"


class ResourceRef(Message, omit_defaults=False):
    """Always carries its namespace on the wire, `default` included (docs/bus.md shows `ref.namespace`)."""

    kind: str
    name: str
    namespace: str = "default"


class ConfigError(Message):
    document: int  # 1-based position in the submitted stream
    message: str
    path: str = ""  # e.g. spec.http[0].route[1].weight
    kind: str = ""
    name: str = ""
    namespace: str = ""


class AppliedResource(Message):
    ref: ResourceRef
    action: str  # created | configured | unchanged | deleted | not found


class ApplyReply(Message, omit_defaults=False):
    """Reply to config.apply (payload: YAML or JSON text, one or more documents) and config.delete."""

    ok: bool
    revision: int = 0
    results: list[AppliedResource] = []
    errors: list[ConfigError] = []
    warnings: list[ConfigError] = []
    error: str = ""  # a failure that is not about one document (the generic error reply, a deadline)
    dry_run: bool = False  # the reply of config.validate: checked as apply checks, nothing stored


class DeleteRequest(Message):
    resources: list[ResourceRef]


class GetRequest(Message):
    kind: str  # a kind or an alias: VirtualService, vs, ...
    namespace: str | None = None  # None: all namespaces
    name: str | None = None


class GetReply(Message, omit_defaults=False):
    ok: bool
    resources: list[dict[str, Any]] = []
    revision: int = 0
    error: str = ""


class ConfigEvent(Message):
    """Published on config.events after a change is stored."""

    type: str  # ADDED | MODIFIED | DELETED
    kind: str
    namespace: str
    name: str
    revision: int
    compiled: bool = True  # False: stored, but compiling the mesh with it failed; proxies keep the last good config
    error: str = ""  # why it did not compile

"""What analyzers read: the decoded resources (files laid over the live config) and the live data they need.

    Entry(resource, origin)                       one decoded resource (proto.resources structs)
    Inputs(resources, services, workloads, secrets, validation, available)
    Context(inputs)                               .of(kind), .find(kind, ns, name), .report(message)

`available` names what was read: "config" always; "registry" when the registry's workloads were read (the
services and endpoints of the live mesh); "secrets" when the ca's secret list was read; "validation" when pilot's
validation of the files was asked (config.validate). An analyzer declares the inputs it needs (Analyzer.inputs);
one whose inputs are missing is skipped and listed as skipped, as istioctl skips analyzers whose input
collections are absent, rather than reporting everything it cannot see as missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import msgspec

from isthmus.analyze.messages import Message, make
from proto.config_api import ConfigError
from proto.registry import Workload
from proto.resources import Resource

SUFFIX = "svc.cluster.local"


class Entry(msgspec.Struct):
    resource: Resource
    origin: str = ""  # the file it came from; "" for the live config

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def namespace(self) -> str:
        return self.resource.metadata.namespace

    @property
    def name(self) -> str:
        return self.resource.metadata.name

    @property
    def spec(self) -> Any:
        return self.resource.spec

    @property
    def friendly(self) -> str:
        """Istio's FriendlyName: `Kind namespace/name`."""
        return f"{self.kind} {self.namespace}/{self.name}"


class Inputs(msgspec.Struct):
    resources: list[Entry] = []
    workloads: list[Workload] = []  # the registry's, when "registry" is available
    secrets: set[tuple[str, str]] = set()  # (namespace, name) of the ca's secrets, when "secrets" is available
    # (file, ConfigError, is_error) from pilot's validation of the files, when "validation" is available
    validation: list[tuple[str, ConfigError, bool]] = []
    available: set[str] = msgspec.field(default_factory=lambda: {"config"})
    root_namespace: str = "istio-system"  # where mesh-wide policies live (ISTHMUS_ROOT_NAMESPACE, as pilot reads it)


class Context:
    """The resources by kind, the live data, and the messages reported so far."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.messages: list[Message] = []
        self._by_kind: dict[str, list[Entry]] = {}
        for entry in inputs.resources:
            self._by_kind.setdefault(entry.kind, []).append(entry)
        self._index = {(e.kind, e.namespace, e.name): e for e in inputs.resources}

    def of(self, kind: str) -> list[Entry]:
        return self._by_kind.get(kind, [])

    def find(self, kind: str, namespace: str, name: str) -> Entry | None:
        return self._index.get((kind, namespace, name))

    def report(self, code: str, entry: Entry | None, *args: Any, resource: str = "", origin: str = "") -> None:
        """Report `code` about `entry` (or a resource named by `resource` when there is no entry)."""
        self.messages.append(make(code, entry.friendly if entry else resource, *args,
                                  origin=entry.origin if entry else origin))

    def service_hosts(self) -> set[str]:
        """The FQDN of every registered service (`name.namespace.svc.cluster.local`)."""
        return {f"{w.service}.{w.namespace}.{SUFFIX}".lower() for w in self.inputs.workloads}

    def workloads_of(self, host: str) -> Iterator[Workload]:
        for w in self.inputs.workloads:
            if f"{w.service}.{w.namespace}.{SUFFIX}".lower() == host:
                yield w


class Analyzer(Protocol):
    """One check, in a file of its own (isthmus/analyze/analyzers/). `codes`: what it may report (keys of
    messages.TYPES); `inputs`: what it needs beyond the config (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str]
    codes: ClassVar[tuple[str, ...]]
    inputs: ClassVar[frozenset[str]]

    def analyze(self, ctx: Context) -> None: ...

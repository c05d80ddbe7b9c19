"""The config API: apply, delete and get Istio-format resources, stored in etcd.

A submission is validated whole (services/pilot/validate/, in a worker process bounded by
ConfigLimits: services/pilot/decode_worker.py) and written in one etcd transaction, so it is stored
entirely or not at all. A request whose sender's deadline has passed (runtime/bus_deadline.py: the
Isthmus-Deadline header) is refused just before its transaction, so a change its client gave up on
never takes effect later. Resources are stored as their JSON under
/isthmus/config/<Kind>/<namespace>/<name>; the reply carries the etcd revision that holds them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from proto.config_api import (
    NAMESPACE_HEADER,
    AppliedResource,
    ApplyReply,
    ConfigError,
    DeleteRequest,
    GetReply,
    GetRequest,
    ResourceRef,
)
from proto.resources import KINDS, Resource, kind_from_alias
from runtime.bus import decode, deadline_passed, encode, request_deadline, request_header
from runtime.settings import ConfigLimits
from runtime.store import CONFIG_PREFIX, Store, StoreError, StoreTooLarge
from services.pilot.validate import decode_documents, gateway_warnings, placement_warnings, subset_warnings

# (text, seconds it may take or None) -> (resources, errors, warnings)
# (text, timeout, default namespace) -> (resources, errors, warnings)
Decoder = Callable[[str, float | None, str], Awaitable[tuple[list[Resource], list[ConfigError], list[ConfigError]]]]
# what the reply says when the sender's deadline passed before the transaction
DEADLINE_PASSED = "the request's deadline passed before it was committed (its sender stopped waiting); nothing was changed"

_json = msgspec.json.Encoder()


def config_key(kind: str, namespace: str, name: str) -> str:
    return f"{CONFIG_PREFIX}{kind}/{namespace}/{name}"


def parse_config_key(key: str) -> tuple[str, str, str]:
    kind, namespace, name = key[len(CONFIG_PREFIX):].split("/", 2)
    return kind, namespace, name


def stored_form(resource: Resource) -> bytes:
    """What etcd holds: the resource as the user wrote it, minus fields a server would own, with the
    namespace always spelled out (so an explicit `namespace: default` and none store the same)."""
    meta = resource.metadata
    clean = msgspec.structs.replace(meta, resource_version=None, uid=None, generation=None,
                                    creation_timestamp=None, managed_fields=None)
    document = msgspec.to_builtins(msgspec.structs.replace(resource, metadata=clean))
    document["metadata"]["namespace"] = meta.namespace
    return _json.encode(document)


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes namespace: a DNS-1123 label


class ConfigApi:
    """`decoder`: decodes and validates a submission (DecodeWorker.decode in pilot; in-process
    decode_documents when None). `not_in_effect(kind, namespace, name)`: (reason, message) when a
    stored resource is not in effect (CompileError, Unreadable), else None; `get` reports it as the
    resource's status."""

    def __init__(self, store: Store, decoder: Decoder | None = None, limits: ConfigLimits | None = None,
                 not_in_effect: Callable[[str, str, str], tuple[str, str] | None] | None = None,
                 root_namespace: str = "istio-system") -> None:
        """`root_namespace`: where mesh-wide policies live (placement warnings of PeerAuthentications)."""
        self.store = store
        self.root_namespace = root_namespace
        self.limits = limits or ConfigLimits()
        self.decoder = decoder or self._decode_here
        self.not_in_effect = not_in_effect or (lambda kind, namespace, name: None)

    async def _decode_here(self, text: str, timeout: float | None = None, default_namespace: str = "default"
                           ) -> tuple[list[Resource], list[ConfigError], list[ConfigError]]:
        return decode_documents(text, limits=self.limits, default_namespace=default_namespace)

    async def validate(self, data: bytes) -> bytes:
        """config.validate: what apply would answer for `data` (errors, warnings, created/configured/unchanged),
        with dry_run true and nothing stored (kubectl's --dry-run=server; `isthmus analyze` asks it)."""
        return await self.apply(data, dry_run=True)

    async def apply(self, data: bytes, dry_run: bool = False) -> bytes:
        if len(data) > self.limits.max_bytes:
            return encode(ApplyReply(ok=False, errors=[ConfigError(
                document=0, message=f"the submission is {len(data)} bytes, larger than {self.limits.max_bytes} "
                                    "(ISTHMUS_CONFIG_MAX_BYTES)")]))
        if deadline_passed():
            return encode(ApplyReply(ok=False, error=DEADLINE_PASSED))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message="payload is not UTF-8 text")]))
        deadline = request_deadline()
        namespace = request_header(NAMESPACE_HEADER)
        if namespace is not None and not _NAMESPACE.fullmatch(namespace):
            return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message=(
                f"namespace {namespace[:80]!r} (from -n) is not a valid namespace name: lower-case letters, digits "
                "and '-', starting and ending with a letter or digit, at most 63 characters"))]))
        resources, errors, warnings = await self.decoder(text, None if deadline is None else deadline - time.time(),
                                                         namespace or "default")
        if namespace is not None:  # kubectl: -n and a document naming another namespace do not mix
            for index, resource in enumerate(resources, 1):
                if resource.metadata.namespace != namespace:
                    errors.append(ConfigError(
                        document=index, kind=resource.kind, name=resource.metadata.name,
                        namespace=resource.metadata.namespace, path="metadata.namespace",
                        message=f'the namespace from the provided object "{resource.metadata.namespace}" does not '
                                f'match the namespace "{namespace}": pass -n {resource.metadata.namespace} or drop '
                                "-n"))
        seen: dict[str, int] = {}
        for index, resource in enumerate(resources, 1):
            key = config_key(resource.kind, resource.metadata.namespace, resource.metadata.name)
            if key in seen:
                errors.append(ConfigError(document=index, kind=resource.kind, name=resource.metadata.name,
                                          namespace=resource.metadata.namespace, path="metadata.name",
                                          message=f"duplicate of document {seen[key]} in the same submission"))
            seen[key] = index
        if errors:
            return encode(ApplyReply(ok=False, errors=errors, warnings=warnings))
        if not resources:
            return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message="no documents in the submission")]))
        warnings += await self._reference_warnings(resources)
        warnings += await self._placement_warnings(resources)
        puts: dict[str, bytes] = {}
        results: list[AppliedResource] = []
        try:
            for resource in resources:
                meta = resource.metadata
                key = config_key(resource.kind, meta.namespace, meta.name)
                value = stored_form(resource)
                existing = await self.store.get(key)
                ref = ResourceRef(kind=resource.kind, name=meta.name, namespace=meta.namespace)
                if existing is not None and existing.value == value:
                    results.append(AppliedResource(ref=ref, action="unchanged"))
                    continue
                puts[key] = value
                results.append(AppliedResource(ref=ref, action="created" if existing is None else "configured"))
            if dry_run:
                return encode(ApplyReply(ok=True, results=results, warnings=warnings, dry_run=True))
            if deadline_passed():
                return encode(ApplyReply(ok=False, error=DEADLINE_PASSED))
            revision = await self.store.commit(puts, []) if puts else 0
        except StoreTooLarge as exc:
            return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message=f"the submission is too "
                                                                   f"large for the store: {exc}")]))
        except StoreError as exc:
            return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message=f"store unavailable: {exc}")]))
        return encode(ApplyReply(ok=True, revision=revision, results=results, warnings=warnings))

    async def _reference_warnings(self, resources: list[Resource]) -> list[ConfigError]:
        """Subsets no DestinationRule defines, Gateways that do not exist (validate/references.py); none when the
        store cannot be read."""
        if not any(r.kind in ("VirtualService", "DestinationRule") for r in resources):
            return []
        stored: list[Resource] = []
        try:
            kinds = ["DestinationRule"] + (["VirtualService"] if any(r.kind == "DestinationRule" for r in resources)
                                           else [])
            if gateway_warnings(resources, []):  # a Gateway named that the submission does not hold: is it stored?
                kinds.append("Gateway")
            for kind in kinds:
                entries, _ = await self.store.list(f"{CONFIG_PREFIX}{kind}/")
                for entry in entries:
                    try:
                        stored.append(msgspec.json.decode(entry.value, type=KINDS[kind].type))
                    except msgspec.ValidationError:
                        continue  # not written by us; pilot's watcher logs it
        except StoreError:
            return []  # the commit that follows reports the store
        gateways = [r for r in stored if r.kind == "Gateway"]
        return subset_warnings(resources, [r for r in stored if r.kind != "Gateway"]) + \
            gateway_warnings(resources, gateways)

    async def _placement_warnings(self, resources: list[Resource]) -> list[ConfigError]:
        """PeerAuthentications a selector in the root namespace, or an older namespace-wide policy, leaves without
        effect (validate/peer_authentication.py); none when the store cannot be read."""
        if not any(r.kind == "PeerAuthentication" for r in resources):
            return []
        stored: list[tuple[Resource, int]] = []
        try:
            entries, _ = await self.store.list(f"{CONFIG_PREFIX}PeerAuthentication/")
        except StoreError:
            return []  # the commit that follows reports the store
        for entry in entries:
            try:
                stored.append((msgspec.json.decode(entry.value, type=KINDS["PeerAuthentication"].type),
                               entry.create_revision))
            except msgspec.ValidationError:
                continue  # not written by us; pilot's watcher logs it
        return placement_warnings(resources, stored, self.root_namespace)

    async def delete(self, data: bytes) -> bytes:
        request = decode(data, DeleteRequest)
        results: list[AppliedResource] = []
        deletes: list[str] = []
        errors: list[ConfigError] = []
        for index, ref in enumerate(request.resources, 1):
            kind = kind_from_alias(ref.kind)
            if kind is None:
                errors.append(ConfigError(document=index, kind=ref.kind, name=ref.name, namespace=ref.namespace,
                                          path="kind", message=_unknown_kind(ref.kind)))
                continue
            key = config_key(kind, ref.namespace, ref.name)
            canonical = ResourceRef(kind=kind, name=ref.name, namespace=ref.namespace)
            try:
                found = await self.store.get(key) is not None
            except StoreError as exc:
                return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message=f"store unavailable: {exc}")]))
            results.append(AppliedResource(ref=canonical, action="deleted" if found else "not found"))
            if found:
                deletes.append(key)
        if errors:
            return encode(ApplyReply(ok=False, errors=errors))
        if deadline_passed():
            return encode(ApplyReply(ok=False, error=DEADLINE_PASSED))
        try:
            revision = await self.store.commit({}, deletes) if deletes else 0
        except StoreError as exc:
            return encode(ApplyReply(ok=False, errors=[ConfigError(document=0, message=f"store unavailable: {exc}")]))
        return encode(ApplyReply(ok=True, revision=revision, results=results))

    async def get(self, data: bytes) -> bytes:
        request = decode(data, GetRequest)
        kind = kind_from_alias(request.kind)
        if kind is None:
            return encode(GetReply(ok=False, error=_unknown_kind(request.kind)))
        prefix = f"{CONFIG_PREFIX}{kind}/"
        if request.namespace is not None:
            prefix += f"{request.namespace}/"
            if request.name is not None:
                prefix += request.name
        try:
            entries, revision = await self.store.list(prefix)
        except StoreError as exc:
            return encode(GetReply(ok=False, error=f"store unavailable: {exc}"))
        resources: list[dict[str, Any]] = []
        for entry in entries:
            _, namespace, name = parse_config_key(entry.key)
            if request.name is not None and name != request.name:
                continue  # the prefix also matched longer names
            try:
                document = msgspec.json.decode(entry.value)
                document["metadata"].setdefault("namespace", namespace)
            except (msgspec.DecodeError, TypeError, KeyError, AttributeError) as exc:  # not written by us
                document = {"apiVersion": "", "kind": kind, "metadata": {"name": name, "namespace": namespace}}
                document["status"] = _not_reconciled("Unreadable", f"the stored resource is not readable: {exc}")
            else:
                problem = self.not_in_effect(kind, namespace, name)
                if problem is not None:
                    document["status"] = _not_reconciled(*problem)
            document["metadata"]["resourceVersion"] = str(entry.mod_revision)
            resources.append(document)
        return encode(GetReply(ok=True, resources=resources, revision=revision))


def _not_reconciled(reason: str, message: str) -> dict[str, Any]:
    """Istio's status shape (istio.meta.v1alpha1.IstioStatus): a Reconciled condition that is False."""
    return {"conditions": [{"type": "Reconciled", "status": "False", "reason": reason, "message": message}]}


def _unknown_kind(kind: str) -> str:
    return f"unknown kind {kind!r}; supported kinds: {', '.join(KINDS)}"

"""Pilot's view of the store: config resources and registered workloads, kept current by
list-then-watch (the Kubernetes informer pattern). After a restart pilot lists at the current
revision and watches from the next one, so nothing stored is lost; a broken or compacted watch
re-lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from proto.registry import Workload
from proto.resources import KINDS
from runtime.log import get_logger
from runtime.store import CONFIG_PREFIX, REGISTRY_PREFIX, Change, Entry, Store, StoreError
from services.pilot.compile import MeshState, Stored
from services.pilot.config_api import parse_config_key

log = get_logger("pilot.inputs")

ResourceKey = tuple[str, str, str]  # kind, namespace, name


class Inputs:
    """Everything compilation reads, with the etcd revision of each item."""

    def __init__(self) -> None:
        self.resources: dict[ResourceKey, Stored] = {}
        self.workloads: dict[str, tuple[Workload, int]] = {}  # by id: the registration compiled for it
        # every registration by its registry key (namespace/service/id) with its create revision, and the keys
        # of each id: the registry checks the identity of one key only, so a workload of another namespace or
        # service may register an id that is already registered (_elect)
        self._registrations: dict[str, tuple[Workload, int, int]] = {}
        self._keys: dict[str, set[str]] = {}
        self.unreadable: dict[ResourceKey, str] = {}  # stored by something else, not in the schema: why
        self.revision = 0

    def apply_config(self, entry: Entry, deleted: bool) -> tuple[str, ResourceKey] | None:
        """Returns (event type, key) for a change that took effect; None for an unreadable entry."""
        key = parse_config_key(entry.key)
        self.revision = max(self.revision, entry.mod_revision)
        self.unreadable.pop(key, None)
        if deleted:
            return ("DELETED", key) if self.resources.pop(key, None) is not None else None
        info = KINDS.get(key[0])
        if info is None:
            log.warning("unknown kind in store", key=entry.key)
            return None
        try:
            resource = msgspec.json.decode(entry.value, type=info.type)
        except msgspec.DecodeError as exc:  # written by something other than the config API
            log.warning("unreadable resource in store", key=entry.key, error=str(exc))
            self.unreadable[key] = f"the stored resource does not match its schema, so it is not compiled: {exc}"
            return None
        existed = key in self.resources
        self.resources[key] = Stored(resource, entry.mod_revision, entry.create_revision)
        return ("MODIFIED" if existed else "ADDED", key)

    def apply_workload(self, entry: Entry, deleted: bool) -> bool:
        """Returns whether the workload changed: a re-registration with the same content is not a
        change, and must not cost a compile and a push to every proxy."""
        workload_id = entry.key.rsplit("/", 1)[-1]
        self.revision = max(self.revision, entry.mod_revision)
        previous = self.workloads.get(workload_id)
        if deleted:
            if self._registrations.pop(entry.key, None) is None:
                return False
            self._keys[workload_id].discard(entry.key)
        else:
            try:
                workload = msgspec.json.decode(entry.value, type=Workload)
            except msgspec.ValidationError as exc:
                log.warning("unreadable workload in store", key=entry.key, error=str(exc))
                return False
            self._registrations[entry.key] = (workload, entry.mod_revision, entry.create_revision)
            self._keys.setdefault(workload_id, set()).add(entry.key)
        current = self._elect(workload_id)
        if current is None or previous is None:
            return current is not previous
        return current[0] != previous[0]

    def _elect(self, workload_id: str) -> tuple[Workload, int] | None:
        """The registration compiled for `workload_id`: the oldest of its keys (create revision, then key).
        Another registered later under the same id (another namespace or service: another key) must not
        displace it: pilot would compile the first one's endpoint away and its security entry from the
        other's labels, which its sidecar refuses (proxy/control/security_state.py), so its policies would
        stay frozen for as long as the other stays registered; and the other's deregistration must not drop it."""
        keys = self._keys.get(workload_id)
        if not keys:
            self._keys.pop(workload_id, None)
            self.workloads.pop(workload_id, None)
            return None
        key = min(keys, key=lambda k: (self._registrations[k][2], k))
        workload, revision, _ = self._registrations[key]
        if len(keys) > 1:
            log.warning("workload id registered under more than one key: the oldest is compiled",
                        workload=workload_id, compiled=key, others=sorted(keys - {key}))
        self.workloads[workload_id] = (workload, revision)
        return self.workloads[workload_id]

    def clear_workloads(self) -> None:
        self.workloads.clear()
        self._registrations.clear()
        self._keys.clear()

    def mesh_state(self, domain_suffix: str, trust_domain: str = "cluster.local",
                   root_namespace: str = "istio-system") -> MeshState:
        return MeshState.build(self.resources, self.workloads, domain_suffix, self.revision, trust_domain,
                               root_namespace)


ConfigListener = Callable[[str, ResourceKey, int], None]


CONFIG = "config"
ENDPOINTS = "endpoints"


class InputWatcher:
    """Keeps an Inputs current; calls on_change(CONFIG or ENDPOINTS) after every change that matters.

    Per prefix it knows the revision its inputs are complete through (`through`): the revision of the last
    list it applied, or of the last watch event after it. `relist()` reads both prefixes afresh; a newly
    elected leader calls it so it compiles nothing older than the store it was elected in, however far its
    watches lag (PilotService._take_over). A list never replaces inputs that are already newer than it,
    and watch events a list already holds are skipped, so the watches and a relist can run side by side."""

    def __init__(self, store: Store, inputs: Inputs, on_change: Callable[[str], None],
                 on_config_event: ConfigListener | None = None) -> None:
        self.store = store
        self.inputs = inputs
        self.on_change = on_change
        self.on_config_event = on_config_event
        self.synced = asyncio.Event()
        self.through: dict[str, int] = {}  # prefix -> revision its inputs are complete through (0: never listed)
        self._listed_at: dict[str, int] = {}  # prefix -> revision of the list applied last: events up to it skipped

    async def run(self) -> None:
        await asyncio.gather(self._follow(CONFIG_PREFIX, True), self._follow(REGISTRY_PREFIX, False))

    async def relist(self) -> int:
        """List every prefix now and apply what is newer than the inputs; returns the lowest revision the inputs
        are complete through afterwards, which is at least the store's revision when relist() was called
        (etcd's reads are linearizable). Raises StoreError."""
        for prefix, is_config in ((CONFIG_PREFIX, True), (REGISTRY_PREFIX, False)):
            entries, revision = await self.store.list(prefix)
            if self._replace(prefix, entries, revision, is_config):
                self.on_change(CONFIG if is_config else ENDPOINTS)
        return min(self.through.get(CONFIG_PREFIX, 0), self.through.get(REGISTRY_PREFIX, 0))

    async def _follow(self, prefix: str, is_config: bool) -> None:
        while True:
            try:
                entries, revision = await self.store.list(prefix)
                self._replace(prefix, entries, revision, is_config)
                if not self.synced.is_set() and len(self.through) == 2:
                    self.synced.set()
                what = CONFIG if is_config else ENDPOINTS
                self.on_change(what)
                async for change in self.store.watch(prefix, revision + 1):
                    if change.entry.mod_revision <= self._listed_at[prefix]:
                        continue  # a relist since holds it (one etcd transaction may hold several such events)
                    self.through[prefix] = max(self.through[prefix], change.entry.mod_revision)
                    if self._apply(change, is_config):
                        self.on_change(what)
            except StoreError as exc:
                log.warning("watch restarting", prefix=prefix, error=str(exc))
                await asyncio.sleep(0.5)

    def _replace(self, prefix: str, entries: list[Entry], revision: int, is_config: bool) -> bool:
        """Replace the prefix's inputs with a list read at `revision`, all at once (nothing is compiled from a
        half-replaced set); False, and nothing changed, when the inputs are already complete through a later
        revision (a watch applied events past it while the list was in flight)."""
        if revision < self.through.get(prefix, 0):
            return False
        self.through[prefix] = self._listed_at[prefix] = revision
        if is_config:
            self.inputs.resources.clear()
            self.inputs.unreadable.clear()
            for entry in entries:
                self.inputs.apply_config(entry, False)
        else:
            self.inputs.clear_workloads()
            for entry in entries:
                self.inputs.apply_workload(entry, False)
        return True

    def _apply(self, change: Change, is_config: bool) -> bool:
        if not is_config:
            return self.inputs.apply_workload(change.entry, change.deleted)
        effect = self.inputs.apply_config(change.entry, change.deleted)
        if effect is not None and self.on_config_event is not None:
            self.on_config_event(effect[0], effect[1], change.entry.mod_revision)
        return effect is not None

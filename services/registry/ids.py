"""One registration per workload id, across namespaces and services: the registry's id index.

The registry stores a workload under /isthmus/registry/<namespace>/<service>/<id>, but pilot and the sidecars
know it by its id alone (pilot compiles one WorkloadSecurity entry per id, which a sidecar takes only when it
was compiled from its own registration). Without an index, a workload of another namespace or service could
register a sidecar's id first, under its own key: pilot compiles the oldest registration of an id, so the real
sidecar never got its own entry and admitted nothing, with no error anywhere it would see. So:

    /isthmus/workload-ids/<id>   WorkloadIdClaim (proto/registry.py): the namespace and service whose registry
                                 key holds the id, and its service account; under that registration's lease

- register(store, workload, ttl, not_own) -> (lease id, "") | (0, why refused)
  writes the workload and the claim in one etcd transaction under one new lease, compare-and-swap on both
  (and on the holder's key when the claim is stale), so of two racing registrations of one id under different
  keys exactly one wins. An id claimed for another key whose registration is still stored is refused, naming
  that registration; the same key again (a restart) moves the claim to the new lease; an id without a claim
  (registered before the index existed, or never) goes to the first registration that writes it.
- deregister(store, namespace, service, id, not_own) -> (entry deleted | None, "") | (None, why refused)
  deletes the workload and, when it holds the id, the claim, in one transaction. A lease that lapses takes both
  with it.
- backfill(store) -> how many ids it claimed: the registry leader, once elected, claims each registered id that
  has no claim (registered before the index existed: a running sidecar registers again only when its lease is
  lost) for its oldest registration (create revision, then key: the one pilot compiles), under that
  registration's lease. Else, after an upgrade, another key could claim a running sidecar's id, and refuse
  that sidecar once it restarts.

Only the registry writes this prefix (the services' etcd user may: etcd's role covers /isthmus/; proxies and the
CLI never reach etcd). Not under REGISTRY_PREFIX, so pilot's registry watch, the registry's events and list, and
its lease holding never see it.

Raises StoreError (etcd unreachable or refusing) from either call, and register Contended when every round lost
a race; a lease granted by a failed register is
revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import msgspec

from proto.registry import Workload, WorkloadIdClaim
from runtime.bus import encode
from runtime.store import REGISTRY_PREFIX, WORKLOAD_ID_PREFIX, Entry, Store

class Contended(Exception):
    """Every compare-and-swap round of a registration lost a race (writes of the same key or id meanwhile): no
    refusal, the caller tries again (RegisterReply.transient)."""


ATTEMPTS = 3  # compare-and-swap rounds before "try again": a loser of a race re-reads and is told who won

_claim = msgspec.json.Decoder(WorkloadIdClaim)
_workload = msgspec.json.Decoder(Workload)


def workload_key(namespace: str, service: str, workload_id: str) -> str:
    return f"{REGISTRY_PREFIX}{namespace}/{service}/{workload_id}"


def id_key(workload_id: str) -> str:
    return f"{WORKLOAD_ID_PREFIX}{workload_id}"


def held_by(workload_id: str, holder: Workload) -> str:
    """The refusal of a registration whose id `holder` (another namespace or service) holds."""
    return (f"workload id {workload_id!r} is already registered by namespace {holder.namespace!r}, service "
            f"{holder.service!r}, service account {holder.service_account!r}: an id names one workload across the "
            "mesh. Register this workload under another id (a sidecar's is <service>-<host name>-<inbound "
            "port>.<namespace>: another --inbound-port changes it), or wait until that registration ends "
            "(deregistered, or its lease lapses once its sidecar stops heartbeating; an operator can revoke "
            "that sidecar's bus credential: `isthmus proxy credentials revoke`)")


def _decoded_claim(entry: Entry) -> WorkloadIdClaim | None:
    try:
        return _claim.decode(entry.value)
    except msgspec.DecodeError:
        return None  # not written by us: no holder, so it is overwritten


async def register(store: Store, workload: Workload, ttl: int,
                   not_own: Callable[[str, str], str]) -> tuple[int, str]:
    """Store `workload` under its registry key and claim its id, under a new lease of `ttl` seconds.
    `not_own(namespace, service_account)`: why the caller may not replace a stored workload of that identity
    ("" when it may). Returns (lease id, "") or (0, why it was refused)."""
    key = workload_key(workload.namespace, workload.service, workload.id)
    lease = 0
    claim = encode(WorkloadIdClaim(namespace=workload.namespace, service=workload.service,
                                   service_account=workload.service_account))
    try:
        for _ in range(ATTEMPTS):
            # the workload this would replace must be of the same identity (as heartbeats and deregistrations):
            # else a sidecar could re-register another service account's workload under its own, and peers
            # would accept its certificate there
            entry = await store.get(key)
            if entry is not None:
                stored = _workload.decode(entry.value)
                problem = not_own(stored.namespace, stored.service_account)
                if problem:
                    return 0, problem
            expect = {key: entry.mod_revision if entry is not None else 0}
            claimed = await store.get(id_key(workload.id))
            expect[id_key(workload.id)] = claimed.mod_revision if claimed is not None else 0
            holder = _decoded_claim(claimed) if claimed is not None else None
            if holder is not None:
                holder_key = workload_key(holder.namespace, holder.service, workload.id)
                if holder_key != key:
                    held = await store.get(holder_key)
                    if held is not None:
                        return 0, held_by(workload.id, _workload.decode(held.value))
                    # a claim whose registration is gone (deleted without it: by a registry older than the index,
                    # or by hand): taken, as long as that registration stays gone
                    expect[holder_key] = 0
            if not lease:
                lease = await store.grant(ttl)
            if await store.swap(expect, {key: encode(workload), id_key(workload.id): claim}, lease=lease):
                granted, lease = lease, 0
                return granted, ""
        raise Contended(f"workload {workload.id!r} changed while registering; try again")
    finally:
        if lease:  # refused, lost every race, or etcd failed: nothing holds this lease
            await store.revoke(lease)


async def deregister(store: Store, namespace: str, service: str, workload_id: str,
                     not_own: Callable[[str, str], str], lease_id: int = 0) -> tuple[Entry | None, str]:
    """Delete the workload registered as namespace/service/workload_id and, when it holds the id, the id's claim,
    in one transaction, unless `not_own` refuses the stored workload's identity. With `lease_id` (a proxy names the
    lease of its own registration), only a registration under that lease is deleted: a sidecar's earlier run that
    deregisters as it stops, after its restart registered again, leaves the new registration alone. Returns (the
    entry deleted, "") (None: nothing of that lease was registered there) or (None, why refused)."""
    key = workload_key(namespace, service, workload_id)
    for _ in range(ATTEMPTS):
        entry = await store.get(key)
        if entry is None or (lease_id and entry.lease != lease_id):
            return None, ""
        stored = _workload.decode(entry.value)
        problem = not_own(stored.namespace, stored.service_account)
        if problem:
            return None, problem
        claimed = await store.get(id_key(workload_id))
        holder = _decoded_claim(claimed) if claimed is not None else None
        ours = holder is not None and (holder.namespace, holder.service) == (namespace, service)
        expect = {key: entry.mod_revision}
        if claimed is not None:
            expect[id_key(workload_id)] = claimed.mod_revision
        if await store.swap(expect, {}, deletes=(key, id_key(workload_id)) if ours else (key,)):
            return entry, ""
    return None, f"workload {workload_id!r} changed while deregistering; try again"


class Backfilled(NamedTuple):
    claimed: int  # ids claimed for their oldest registration
    removed: list[str]  # registry keys deleted: another registration of an id already held


async def backfill(store: Store) -> Backfilled:
    """Bring registrations older than the index under its rule, one registration per id: claim each registered
    id without a claim for its oldest registration (the one pilot compiles), under that registration's lease, and
    delete the id's other registrations (left by a registry older than the index, from another namespace or
    service). Pilot never compiled those; kept, one would take the id the moment its holder restarts (the
    holder's earlier run deregisters, the new run's registration finds no claim), and pilot would compile it
    instead: the holder's sidecar would admit nothing. Deleted, their sidecars' next heartbeat finds no lease,
    they register again and are refused, naming the holder (/ready says so). Every write is a compare-and-swap:
    a registration racing it, or a claim written meanwhile, wins."""
    entries, _ = await store.list(REGISTRY_PREFIX)
    claims, _ = await store.list(WORKLOAD_ID_PREFIX)
    holder_of = {entry.key[len(WORKLOAD_ID_PREFIX):]: _decoded_claim(entry) for entry in claims}
    by_id: dict[str, list[Entry]] = {}
    for entry in entries:
        by_id.setdefault(entry.key.rsplit("/", 1)[-1], []).append(entry)
    claimed, removed = 0, []
    for workload_id, registered in by_id.items():
        holder = holder_of.get(workload_id)
        if workload_id in holder_of:
            kept = workload_key(holder.namespace, holder.service, workload_id) if holder is not None else ""
        else:
            oldest = min((e for e in registered if e.lease), key=lambda e: (e.create_revision, e.key), default=None)
            if oldest is None or not await _claim_for(store, workload_id, oldest):
                continue  # nothing to claim with, or it changed meanwhile: the next election looks again
            claimed, kept = claimed + 1, oldest.key
        if not any(e.key == kept for e in registered):
            continue  # the claim's registration is gone (the next registration takes the id): nothing to keep
        for other in registered:
            if other.key != kept and await store.swap({other.key: other.mod_revision}, {}, deletes=(other.key,)):
                removed.append(other.key)
    return Backfilled(claimed, removed)


async def _claim_for(store: Store, workload_id: str, entry: Entry) -> bool:
    try:
        workload = _workload.decode(entry.value)
    except msgspec.DecodeError:
        return False  # not written by us
    claim = WorkloadIdClaim(namespace=workload.namespace, service=workload.service,
                            service_account=workload.service_account)
    return await store.swap({id_key(workload_id): 0, entry.key: entry.mod_revision},
                            {id_key(workload_id): encode(claim)}, lease=entry.lease)

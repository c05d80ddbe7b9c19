"""Proxy sync status: every ACK/NACK is kept in memory and flushed to etcd in batches, so a push to
a thousand proxies costs one transaction per flush, not a thousand writes.

Status keys (/isthmus/status/proxies/<id>) do not outlive their proxy: a sweep deletes the key of a
proxy that is no longer registered (its registration lease expired or it deregistered) once its
last report is older than `grace` seconds. `statuses()` answers `isthmus proxy-status`: SYNCED (the
proxy ACKed pilot's current version), STALE (it ACKed an older one), REJECTED (its last report was a
NACK, with the proxy's error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from proto.busauth import BusCredsRecord
from proto.registry import Workload
from proto.xds import Ack, ProxyStatus
from runtime.bus import decode, encode
from runtime.log import get_logger
from runtime.store import BUS_CREDS_PREFIX, STATUS_PREFIX, Store, StoreError

log = get_logger("pilot.status")
TXN_OPS = 100
MAX_ERROR = 4096  # characters of a NACK's error that are kept (a proxy bounds its own; scripts may not)
MAX_NAME = 253  # characters of proxy_id, service, namespace and epoch (a DNS name's length); longer: dropped
MAX_SEQ = 2**63 - 1  # seq and version are int64 counters
MAX_WAITING = 1024  # ACKs of proxies not (yet) registered, held in memory until they register or `grace` passes
PROXY_USER = "proxy."  # a proxy's own bus credential: `proxy.<credential id>` (services/auth)
MAX_CRED_CACHE = 4096  # bus credentials' identities kept (credential id -> (namespace, service account))


def _refusal(ack: Ack) -> str:
    """Why a received ACK is not recorded ("" when it is): the fields that are stored and shown are
    bounded, so a forged ACK cannot make pilot hold or `isthmus proxy-status` print unbounded text."""
    for field, text in (("proxy_id", ack.proxy_id), ("service", ack.service), ("namespace", ack.namespace),
                        ("epoch", ack.epoch), ("bus_user", ack.bus_user), ("proxy_version", ack.proxy_version)):
        if len(text) > MAX_NAME:
            return f"{field} is {len(text)} characters, more than {MAX_NAME}"
        if not text.isprintable():
            return f"{field} holds control characters"
    if not ack.proxy_id:
        return "proxy_id is empty"
    if not (0 <= ack.seq <= MAX_SEQ and 0 <= ack.version <= MAX_SEQ):
        return "seq and version must be 0..2^63-1"
    return ""


class ProxyStatusRecorder:
    """`registered(proxy_id)`: whether the proxy still has a registration (pilot's view of the registry)."""

    def __init__(self, store: Store, flush_interval: float = 1.0,
                 registered: Callable[[str], bool] | None = None, grace: float = 60.0,
                 workload: Callable[[str], Workload | None] | None = None) -> None:
        """`workload(proxy_id)`: the registered Workload (None: unknown); with it, an ACK's `bus_user` is kept only
        when that credential's identity is the workload's (bus_user_for)."""
        self.store = store
        self.workload = workload
        self.cred_identity: dict[str, tuple[str, str] | None] = {}  # credential id -> (namespace, service account)
        self.flush_interval = flush_interval
        self.registered = registered or (lambda proxy_id: True)
        self.grace = grace
        self.dirty: dict[str, ProxyStatus] = {}
        # ACKs of proxies pilot does not see registered: any proxy may publish an ACK with any proxy_id, and
        # storing them all let one proxy write 674,000 status keys in 5 s, past what one etcd list may return
        # (proxy-status and the sweep then failed for good). Only registered proxies' are stored; a proxy's
        # first ACK may come before its registration, so those wait here, bounded in count and time.
        self.waiting: dict[str, ProxyStatus] = {}
        self.refused_waiting = 0  # ACKs dropped because MAX_WAITING were waiting (logged at each flush)

    async def on_ack(self, data: bytes) -> None:
        ack = decode(data, Ack)
        problem = _refusal(ack)
        if problem:
            log.warning("ack dropped", reason=problem, proxy=ack.proxy_id[:MAX_NAME])
            return
        # before bus_user_for's etcd read: a dropped ACK costs none
        registered = self.workload(ack.proxy_id) if self.workload is not None else None
        if registered is not None and ((ack.namespace and ack.namespace != registered.namespace)
                                       or (ack.service and ack.service != registered.service)):
            # a proxy of another namespace or service under this id: the registry refused its registration (one
            # registration per id), so its ACK must not stand in for the registered proxy's row in proxy-status
            log.warning("ack dropped: another workload's id", proxy=ack.proxy_id, namespace=ack.namespace[:MAX_NAME],
                        service=ack.service[:MAX_NAME], registered=f"{registered.namespace}/{registered.service}")
            return
        status = ProxyStatus(
            proxy_id=ack.proxy_id, service=ack.service, namespace=ack.namespace, epoch=ack.epoch,
            seq=ack.seq, version=ack.version, ok=ack.ok, error=ack.error[:MAX_ERROR], updated_at=time.time(),
            bus_user=await self.bus_user_for(ack), proxy_version=ack.proxy_version, gateway=ack.gateway)
        if not self.registered(ack.proxy_id):
            if ack.proxy_id in self.waiting or len(self.waiting) < MAX_WAITING:
                self.waiting[ack.proxy_id] = status
            else:
                self.refused_waiting += 1
            return
        self.waiting.pop(ack.proxy_id, None)
        if not ack.ok:
            log.warning("proxy rejected config", proxy=ack.proxy_id, seq=ack.seq, error=ack.error[:MAX_ERROR])
        self.dirty[ack.proxy_id] = status

    async def bus_user_for(self, ack: Ack) -> str:
        """The ACK's `bus_user` if it may be believed, else "". It names the debug subject the operator's
        `proxy-config`/`proxy log` ask (isthmus.proxy.debug.<credential id>), and the shared ACK subject proves no
        sender: any proxy could claim another's id with its own credential and answer the operator as it. So a
        proxy credential is kept only when its record (etcd, written by the auth service) has the namespace and
        service account of the workload registered under the ACK's proxy_id; unknown workloads get none (their
        next ACK after registering brings it). Without `workload` (tests of the recorder alone): kept."""
        user = ack.bus_user
        if not user or self.workload is None:
            return user
        if not user.startswith(PROXY_USER):
            return ""  # the operator's or a service's credential is never a proxy's debug subject
        workload = self.workload(ack.proxy_id)
        if workload is None:
            return ""
        cred_id = user[len(PROXY_USER):]
        if cred_id not in self.cred_identity:
            try:
                entry = await self.store.get(BUS_CREDS_PREFIX + cred_id)
                record = decode(entry.value, BusCredsRecord) if entry is not None else None
            except (StoreError, msgspec.ValidationError, msgspec.DecodeError):
                return ""  # not cached: asked again at the next ACK
            if len(self.cred_identity) >= MAX_CRED_CACHE:
                self.cred_identity.clear()
            self.cred_identity[cred_id] = None if record is None or record.revoked else \
                (record.namespace, record.service_account)
        if self.cred_identity[cred_id] != (workload.namespace, workload.service_account or "default"):
            log.debug("ack's bus_user is not the workload's identity: not recorded", proxy=ack.proxy_id, user=user)
            return ""
        return user

    def _admit_waiting(self) -> None:
        """Waiting ACKs of proxies that registered meanwhile become status; those older than `grace` go."""
        now = time.time()
        for proxy_id, status in list(self.waiting.items()):
            if self.registered(proxy_id):
                del self.waiting[proxy_id]
                self.dirty.setdefault(proxy_id, status)
            elif now - status.updated_at > self.grace:
                del self.waiting[proxy_id]
        if self.refused_waiting:
            log.warning("acks of unregistered proxies dropped", count=self.refused_waiting, held=len(self.waiting),
                        bound=MAX_WAITING)
            self.refused_waiting = 0

    async def run(self) -> None:
        sweep_every = max(1, int(self.grace / 2 / self.flush_interval))
        rounds = 0
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
            rounds += 1
            if rounds % sweep_every == 0:
                await self.sweep()

    async def flush(self) -> None:
        self._admit_waiting()
        if not self.dirty:
            return
        batch, self.dirty = self.dirty, {}
        items = [(f"{STATUS_PREFIX}{pid}", encode(s)) for pid, s in batch.items()]
        try:
            for start in range(0, len(items), TXN_OPS):  # etcd caps operations per transaction
                await self.store.commit(dict(items[start:start + TXN_OPS]), [])
        except StoreError as exc:
            log.warning("status flush failed", error=str(exc))
            batch.update(self.dirty)
            self.dirty = batch

    async def stored(self) -> list[ProxyStatus]:
        """Every proxy's last report: etcd (all replicas' flushes) overlaid with unflushed ones."""
        entries, _ = await self.store.list(STATUS_PREFIX)
        found: dict[str, ProxyStatus] = {}
        for entry in entries:
            try:
                status = msgspec.json.decode(entry.value, type=ProxyStatus)
            except msgspec.DecodeError:
                continue
            found[status.proxy_id] = status
        found.update(self.dirty)
        return sorted(found.values(), key=lambda s: (s.namespace, s.service, s.proxy_id))

    async def sweep(self) -> int:
        """Delete status keys of proxies that are gone; returns how many."""
        try:
            now = time.time()
            gone = [f"{STATUS_PREFIX}{s.proxy_id}" for s in await self.stored()
                    if not self.registered(s.proxy_id) and now - s.updated_at > self.grace]
            for start in range(0, len(gone), TXN_OPS):
                await self.store.commit({}, gone[start:start + TXN_OPS])
        except StoreError as exc:
            log.warning("status sweep failed", error=str(exc))
            return 0
        for key in gone:
            self.dirty.pop(key[len(STATUS_PREFIX):], None)
        if gone:
            log.info("status of departed proxies removed", count=len(gone))
        return len(gone)

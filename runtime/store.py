"""etcd access for the control-plane services (proxies never touch etcd).

    StoreError          etcd unreachable or refused the operation (translated from aetcd here)

Keys are laid out under /isthmus/:
    /isthmus/config/<Kind>/<namespace>/<name>            an applied resource (JSON)
    /isthmus/registry/<namespace>/<service>/<id>         a registered workload, under its lease
    /isthmus/workload-ids/<id>                           which registry key holds that id, under the same lease
    /isthmus/status/proxies/<id>                         what a proxy last ACKed/NACKed
    /isthmus/leader/<service>                            the leader's instance name, under a lease
    /isthmus/ca/bundle                                   the ca's roots and signer (CaState; public certs only)
    /isthmus/ca/tokens/<id>                              a bootstrap token, its secret only as SHA-256
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import runtime.grpc_fork  # noqa: F401  (before aetcd: gRPC's fork handlers off)

import aetcd  # noqa: E402
import aetcd.exceptions  # noqa: E402

from runtime.log import get_logger

log = get_logger("store")

CONFIG_PREFIX = "/isthmus/config/"
REGISTRY_PREFIX = "/isthmus/registry/"
# the registry's id index (services/registry/ids.py): not under REGISTRY_PREFIX, so what watches or lists the
# registrations (pilot, the registry's events, its list, lease holding) never sees it
WORKLOAD_ID_PREFIX = "/isthmus/workload-ids/"
STATUS_PREFIX = "/isthmus/status/proxies/"
LEADER_PREFIX = "/isthmus/leader/"
BUS_CREDS_PREFIX = "/isthmus/bus/creds/"  # proxies' bus credentials (services/auth), BusCredsRecord per id


class StoreError(Exception):
    pass


class StoreTooLarge(StoreError):
    """etcd refused a request as too large (its --max-request-bytes): retrying will not help."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Change:
    deleted: bool
    entry: Entry


def _entry(kv: object) -> Entry:
    return Entry(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision, kv.lease)  # type: ignore[attr-defined]


# gRPC's default 4 MiB limit on a received message made any prefix past it unreadable (about 16,000 proxy
# credentials: `isthmus proxy credentials list` and every token join failed). etcd's own Go client
# (clientv3 defaultMaxCallRecvMsgSize) and Kubernetes' API server take math.MaxInt32; so do we: what a
# range holds is bounded where it is written (MAX_CREDENTIALS, ISTHMUS_CA_MAX_TOKENS, pilot's limits).
MAX_RECEIVE = 2**31 - 1
CHANNEL_OPTIONS = {"grpc.max_receive_message_length": MAX_RECEIVE}


def grpc_target(endpoints: list[tuple[str, int]]) -> tuple[str, int]:
    """The (host, port) to give aetcd for several etcd members. aetcd dials one gRPC target, f"{host}:{port}";
    for a cluster that target is gRPC's `ipv4:` name listing every member's address (names resolved now),
    which gRPC's default pick_first policy dials in order, moving to the next when the one it uses fails
    (etcd's own Go client balances over its endpoints the same way). One endpoint is returned as it is."""
    if len(endpoints) == 1:
        return endpoints[0]
    addresses: list[str] = []
    for host, port in endpoints:
        try:
            ipaddress.IPv4Address(host)
            ips = [host]
        except ValueError:
            try:
                ips = sorted({info[4][0] for info in socket.getaddrinfo(host, port, socket.AF_INET,
                                                                          socket.SOCK_STREAM)})
            except OSError as exc:  # a member not resolvable now: the others still serve
                log.warning("etcd member not resolvable", host=host, error=str(exc))
                continue
        addresses += [f"{ip}:{port}" for ip in ips]
    if not addresses:
        return endpoints[0]
    last_host, last_port = addresses[-1].rsplit(":", 1)
    return "ipv4:" + ",".join([*addresses[:-1], last_host]), int(last_port)


class Store:
    def __init__(self, client: aetcd.Client) -> None:
        self.client = client

    @classmethod
    async def connect(cls, host: str, port: int, wait: float = 30.0, *, user: str = "",
                      password: str = "") -> "Store":
        """`user`/`password`: etcd's own authentication (`isthmus up` enables it; services only)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            client = aetcd.Client(host=host, port=port, timeout=5, username=user or None,
                                  password=password or None, options=CHANNEL_OPTIONS)
            try:
                await client.connect()
                await client.status()
                if not user:  # status() answers anyone: a read tells whether etcd wants a user
                    await client.get(b"/isthmus/")
                return cls(client)
            except Exception as exc:
                await client.close()
                if "authentication failed" in str(exc):  # wrong user or password: retrying cannot help
                    raise StoreError(f"etcd at {host}:{port} refused our credentials: {exc}") from exc
                if "user name is empty" in str(exc):  # etcd authentication is on, and we have no user
                    raise StoreError(f"etcd at {host}:{port} wants a user and password, and this client config has "
                                     "no etcd credentials: a service reads the config `isthmus up` writes for it, "
                                     "<state-dir>/secrets/<service>.yaml (ISTHMUS_CONFIG), not the operator's "
                                     "isthmus.yaml") from exc
                if loop.time() > deadline:
                    raise StoreError(f"cannot reach etcd at {host}:{port}: {exc}") from exc
                await asyncio.sleep(0.25)

    async def close(self) -> None:
        await self.client.close()

    async def list(self, prefix: str) -> tuple[list[Entry], int]:
        """All entries under prefix and the store revision they were read at."""
        try:
            result = await self.client.get_prefix(prefix.encode())
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"listing {prefix}: {exc}") from exc
        return [_entry(kv) for kv in result], result.header.revision

    async def keys(self, prefix: str) -> list[str]:
        """The keys under prefix (no values: a cheap way to page through a large prefix), in key order."""
        try:
            result = await self.client.get_prefix(prefix.encode(), keys_only=True)
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"listing {prefix}: {exc}") from exc
        return [kv.key.decode() for kv in result]

    async def get(self, key: str) -> Entry | None:
        try:
            result = await self.client.get(key.encode())
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"reading {key}: {exc}") from exc
        return None if result is None else _entry(result)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        try:
            result = await self.client.put(key.encode(), value, lease=lease or None)
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"writing {key}: {exc}") from exc
        return result.header.revision

    async def commit(self, puts: dict[str, bytes], deletes: list[str]) -> int:
        """Write all puts and deletes in one transaction; returns the new revision."""
        tx = self.client.transactions
        ops = [tx.put(k.encode(), v) for k, v in puts.items()] + [tx.delete(k.encode()) for k in deletes]
        if not ops:
            return 0
        try:
            _, responses = await self.client.transaction(compare=[], success=ops, failure=[])
        except aetcd.exceptions.ClientError as exc:
            size = sum(len(k) + len(v) for k, v in puts.items())
            if "larger than max" in str(exc) or "too large" in str(exc):
                raise StoreTooLarge(f"{size} bytes in one transaction are more than etcd accepts (its "
                                    f"--max-request-bytes): {exc}") from exc
            raise StoreError(f"committing {len(ops)} changes: {exc}") from exc
        revision = 0
        for response in responses:
            kind = response.WhichOneof("response")
            revision = max(revision, getattr(response, kind).header.revision)
        return revision

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self.client.delete(key.encode()))
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"deleting {key}: {exc}") from exc

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Change]:
        """Changes under prefix from start_revision on. Raises StoreError when the watch breaks
        (e.g. the revision was compacted); the caller re-lists and watches again."""
        try:
            watch = await self.client.watch_prefix(prefix.encode(), start_revision=start_revision)
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"watching {prefix}: {exc}") from exc
        try:
            async for event in watch:
                yield Change(event.kind == "DELETE", _entry(event.kv))
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"watch on {prefix} broke: {exc}") from exc
        finally:
            try:
                await watch.cancel()
            except Exception:
                pass

    # leases

    async def grant(self, ttl: int) -> int:
        try:
            return (await self.client.lease(ttl)).id
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"granting a lease: {exc}") from exc

    async def refresh(self, lease_id: int) -> int:
        """Keep a lease alive; returns its TTL, 0 when the lease no longer exists."""
        try:
            reply = await self.client.refresh_lease(lease_id)
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"refreshing lease {lease_id}: {exc}") from exc
        return max(0, int(reply.TTL)) if reply is not None else 0

    async def revoke(self, lease_id: int) -> None:
        try:
            await self.client.revoke_lease(lease_id)
        except aetcd.exceptions.ClientError:
            pass  # already expired: the goal is reached

    async def create_if_absent(self, key: str, value: bytes, lease: int) -> bool:
        """Atomically create key under lease unless it exists (used for leader election)."""
        tx = self.client.transactions
        try:
            ok, _ = await self.client.transaction(
                compare=[tx.create(key.encode()) == 0],
                success=[tx.put(key.encode(), value, lease=lease or None)],
                failure=[],
            )
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"creating {key}: {exc}") from exc
        return bool(ok)

    async def delete_if_revision(self, key: str, mod_revision: int) -> bool:
        """Delete key only if its mod_revision is still `mod_revision`; False when it changed (or is gone)."""
        tx = self.client.transactions
        try:
            ok, _ = await self.client.transaction(compare=[tx.mod(key.encode()) == mod_revision],
                                                  success=[tx.delete(key.encode())], failure=[])
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"deleting {key}: {exc}") from exc
        return bool(ok)

    async def put_if_revision(self, key: str, value: bytes, mod_revision: int, lease: int = 0) -> bool:
        """Write key (under `lease`, if given) only if its mod_revision is still `mod_revision` (0: only if
        absent); False when another writer got there first (compare-and-swap: re-read and retry)."""
        tx = self.client.transactions
        compare = tx.create(key.encode()) == 0 if mod_revision == 0 else tx.mod(key.encode()) == mod_revision
        try:
            ok, _ = await self.client.transaction(compare=[compare],
                                                  success=[tx.put(key.encode(), value, lease=lease or None)],
                                                  failure=[])
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"writing {key}: {exc}") from exc
        return bool(ok)

    async def swap(self, expect: dict[str, int], puts: dict[str, bytes], deletes: tuple[str, ...] = (),
                   lease: int = 0) -> bool:
        """One transaction: if every key of `expect` is still at its mod_revision (0: still absent), write `puts`
        (all under `lease`, if given) and delete `deletes`; False, and nothing written, when any of them changed
        (compare-and-swap over several keys: re-read and retry)."""
        tx = self.client.transactions
        compare = [tx.create(key.encode()) == 0 if revision == 0 else tx.mod(key.encode()) == revision
                   for key, revision in expect.items()]
        ops = ([tx.put(key.encode(), value, lease=lease or None) for key, value in puts.items()]
               + [tx.delete(key.encode()) for key in deletes])
        try:
            ok, _ = await self.client.transaction(compare=compare, success=ops, failure=[])
        except aetcd.exceptions.ClientError as exc:
            raise StoreError(f"writing {', '.join([*puts, *deletes])}: {exc}") from exc
        return bool(ok)

"""runtime/store.py Store.swap with a real etcd (started from the wheel on a free loopback port): a
transaction over several keys that writes only while each compared key is where it was read, all puts under
one lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from isthmus.launch import ManagedProcess, start_etcd
from runtime.store import Store

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    proc = start_etcd(tmp_path_factory.mktemp("swap"), unsafe_no_fsync=True)
    yield proc
    proc.stop(5)


@pytest.fixture
async def store(etcd: ManagedProcess) -> AsyncIterator[Store]:
    host, port = (etcd.url or "").removeprefix("http://").rsplit(":", 1)
    client = await Store.connect(host, int(port))
    yield client
    await client.close()


async def test_swap_writes_every_key_under_the_lease_while_each_compared_key_is_unchanged(store: Store) -> None:
    lease = await store.grant(60)
    assert await store.swap({"/t/a": 0, "/t/b": 0}, {"/t/a": b"1", "/t/b": b"2"}, lease=lease)
    a, b = await store.get("/t/a"), await store.get("/t/b")
    assert a is not None and b is not None
    assert (a.value, b.value, a.lease, b.lease) == (b"1", b"2", lease, lease)
    assert a.mod_revision == b.mod_revision  # one transaction
    await store.revoke(lease)  # the lease takes both
    assert await store.get("/t/a") is None and await store.get("/t/b") is None


async def test_swap_writes_nothing_when_any_compared_key_changed(store: Store) -> None:
    await store.put("/u/a", b"old")
    entry = await store.get("/u/a")
    assert entry is not None
    await store.put("/u/b", b"there")  # expected absent, and is not
    assert not await store.swap({"/u/a": entry.mod_revision, "/u/b": 0}, {"/u/a": b"new", "/u/c": b"x"})
    assert (await store.get("/u/a")).value == b"old"  # type: ignore[union-attr]
    assert await store.get("/u/c") is None
    assert await store.swap({"/u/a": entry.mod_revision}, {"/u/a": b"new"}, deletes=("/u/b",))
    assert (await store.get("/u/a")).value == b"new"  # type: ignore[union-attr]
    assert await store.get("/u/b") is None


async def test_of_racing_swaps_from_one_read_exactly_one_writes(store: Store) -> None:
    results = await asyncio.gather(*(store.swap({"/v/id": 0}, {"/v/id": str(n).encode(), f"/v/{n}": b""})
                                     for n in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert (await store.get("/v/id")).value == str(winner).encode()  # type: ignore[union-attr]
    assert [key for key in await store.keys("/v/") if key != "/v/id"] == [f"/v/{winner}"]

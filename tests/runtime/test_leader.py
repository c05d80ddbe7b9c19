"""runtime/leader.py with a real etcd (started from the wheel on a free loopback port): one of two
candidates leads; when its lease is revoked, or it stops keeping the lease alive (a stopped process), the
other takes over within the TTL bound, and the old leader learns it is deposed and stops acting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from isthmus.launch import ManagedProcess, start_etcd
from runtime.leader import LeaderElection
from runtime.store import LEADER_PREFIX, Store

pytestmark = pytest.mark.asyncio
TTL = 2  # seconds: short, so takeovers are quick; campaigns and keep-alives run every TTL/3


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    proc = start_etcd(tmp_path_factory.mktemp("leader"), unsafe_no_fsync=True)
    yield proc
    proc.stop(5)


async def connect(etcd: ManagedProcess) -> Store:
    host, port = (etcd.url or "").removeprefix("http://").rsplit(":", 1)
    return await Store.connect(host, int(port))


class Candidate:
    """A LeaderElection on its own etcd connection, recording what it was told (its 'acting')."""

    def __init__(self, store: Store, service: str, name: str) -> None:
        self.store = store
        self.events: list[tuple[str, float]] = []
        self.election = LeaderElection(store, service, name, TTL, self._elected, self._deposed)
        self.task: asyncio.Task[None] | None = None

    async def _elected(self) -> None:
        self.events.append(("elected", time.monotonic()))

    async def _deposed(self) -> None:
        self.events.append(("deposed", time.monotonic()))

    def start(self) -> "Candidate":
        self.task = asyncio.create_task(self.election.run())
        return self

    async def stop(self) -> None:
        """Stop campaigning and keeping the lease alive, without resigning (a process that froze or died)."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    @property
    def leads(self) -> bool:
        return self.election.is_leader


async def wait_for(check, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until check() is true; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
async def pair(etcd: ManagedProcess, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Candidate, Candidate]]:
    service = f"svc-{request.node.name[-40:]}".replace("[", "-").replace("]", "")
    stores = [await connect(etcd) for _ in range(2)]
    a, b = Candidate(stores[0], service, "a").start(), Candidate(stores[1], service, "b").start()
    await wait_for(lambda: a.leads or b.leads, 10)
    await asyncio.sleep(TTL / 3 + 0.3)  # a full campaign round of the other: it must not take over
    yield (a, b) if a.leads else (b, a)
    for c in (a, b):
        await c.stop()
    for store in stores:
        await store.close()


async def test_of_two_candidates_exactly_one_leads_and_holds_the_key(pair: tuple[Candidate, Candidate]) -> None:
    leader, other = pair
    assert leader.leads and not other.leads
    entry = await leader.store.get(leader.election.key)
    assert entry is not None and entry.value == leader.election.instance.encode()
    assert leader.election.key.startswith(LEADER_PREFIX)
    assert [e for e, _ in leader.events] == ["elected"] and other.events == []


async def test_a_revoked_lease_moves_leadership_within_the_ttl_and_the_old_leader_is_deposed(
        pair: tuple[Candidate, Candidate]) -> None:
    leader, other = pair
    await other.store.revoke(leader.election._lease)  # e.g. an operator, or etcd losing the lease
    took = await wait_for(lambda: other.leads, TTL + 2)
    assert took <= TTL + 1, took  # a campaign round (TTL/3) after the key is gone; the TTL is the bound
    await wait_for(lambda: not leader.leads, TTL)  # its next keep-alive finds the lease gone
    assert [e for e, _ in leader.events] == ["elected", "deposed"]
    entry = await other.store.get(other.election.key)
    assert entry is not None and entry.value == other.election.instance.encode()


async def test_a_leader_that_stops_is_replaced_after_its_lease_expires_and_stands_down_when_it_resumes(
        pair: tuple[Candidate, Candidate]) -> None:
    leader, other = pair
    await leader.stop()  # frozen: no keep-alive, no resignation; its lease runs out
    stopped = time.monotonic()
    await wait_for(lambda: other.leads, TTL * 3)
    took = time.monotonic() - stopped
    # its last keep-alive was at most TTL/3 before it stopped: the lease lives at least 2/3 TTL more,
    # and a live lease is never stolen
    assert took >= TTL / 2, took
    assert took <= TTL + TTL / 3 + 2, took  # the TTL, one campaign round, and slack for a loaded machine
    # by its own clock its lease has lapsed: it no longer acts as leader, even before it runs again
    assert not leader.leads and leader.election._leading
    leader.start()  # running again, it stands down (on_deposed) at once, without waiting for etcd
    await wait_for(lambda: len(leader.events) == 2, 1)
    assert [e for e, _ in leader.events] == ["elected", "deposed"]
    await asyncio.sleep(TTL / 3 + 0.3)  # a campaign round later, it has not taken the key back
    assert other.leads and not leader.leads


async def test_resign_hands_over_at_once(pair: tuple[Candidate, Candidate]) -> None:
    leader, other = pair
    await leader.stop()
    await leader.election.resign()
    assert not leader.leads
    took = await wait_for(lambda: other.leads, TTL + 1)
    assert took <= TTL / 3 + 1, took  # the other's next campaign round, not a lease expiry


async def test_a_leader_keeps_leading_across_many_keep_alives(pair: tuple[Candidate, Candidate]) -> None:
    leader, other = pair
    await asyncio.sleep(TTL * 2)  # several keep-alives: each extends the lease it times by its own clock
    assert leader.leads and not other.leads
    assert [e for e, _ in leader.events] == ["elected"] and other.events == []

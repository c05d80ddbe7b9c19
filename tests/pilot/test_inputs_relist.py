"""services/pilot/inputs.py InputWatcher.relist with a real etcd: a relist brings the inputs up to the store however
far the watches lag, the lagging watch's events that the relist already holds are skipped when they arrive (so
the inputs never step back), the events after it are applied (several keys of one transaction too), and a list
older than what the inputs hold replaces nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from isthmus.launch import ManagedProcess, start_etcd
from proto.registry import Workload
from runtime.bus import encode
from runtime.store import REGISTRY_PREFIX
from services.pilot.inputs import Inputs, InputWatcher
from tests.lagging_store import LaggingStore

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    proc = start_etcd(tmp_path_factory.mktemp("relist"), unsafe_no_fsync=True)
    yield proc
    proc.stop(5)


def key(wid: str) -> str:
    return f"{REGISTRY_PREFIX}relist/fin/{wid}"


def workload(wid: str, version: str) -> bytes:
    return encode(Workload(id=wid, service="fin", namespace="relist", labels={"version": version}))


async def eventually(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


def labels(inputs: Inputs) -> dict[str, str]:
    return {wid: held[0].labels["version"] for wid, held in inputs.workloads.items()}


async def test_a_relist_catches_up_past_a_lagging_watch_which_then_never_steps_the_inputs_back(
        etcd: ManagedProcess) -> None:
    host, port = (etcd.url or "").removeprefix("http://").rsplit(":", 1)
    store = await LaggingStore.connect(host, int(port))
    inputs = Inputs()
    seen: list[dict[str, str]] = []  # the inputs at every change the watcher reports (what a compile would read)
    watcher = InputWatcher(store, inputs, lambda _: seen.append(labels(inputs)))
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.synced.wait(), 10)
        await store.put(key("a"), workload("a", "v1"))
        await eventually(lambda: labels(inputs) == {"a": "v1"})

        store.flowing.clear()  # the watches lag from here
        store.yielded.clear()
        await store.put(key("a"), workload("a", "v2"))
        before = await store.put(key("a"), workload("a", "v3"))
        await store.put(key("b"), workload("b", "v1"))
        await asyncio.sleep(0.2)
        assert labels(inputs) == {"a": "v1"}  # lagging
        revision = await watcher.relist()
        assert revision >= before + 1
        assert labels(inputs) == {"a": "v3", "b": "v1"}
        seen.clear()

        store.flowing.set()  # the lagging events arrive: already held, skipped (a would go back to v2)
        await store.delete(key("b"))
        after = await store.commit({key("c"): workload("c", "v1"), key("d"): workload("d", "v1")}, [])
        await eventually(lambda: labels(inputs) == {"a": "v3", "c": "v1", "d": "v1"})  # both keys of the transaction
        assert watcher.through[REGISTRY_PREFIX] == after
        assert [c.entry.mod_revision for c in store.yielded][:3] == [before - 1, before, before + 1]  # they came
        assert all(s.get("a") == "v3" for s in seen), seen  # never stepped back

        # a list read before what the inputs already hold (in flight while the watch moved on) replaces nothing
        assert not watcher._replace(REGISTRY_PREFIX, [], revision, False)
        assert labels(inputs) == {"a": "v3", "c": "v1", "d": "v1"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()

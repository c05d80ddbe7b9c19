"""Limits of bus_user_for at their bound and one over (tester final7)."""

from __future__ import annotations

import asyncio

from proto.xds import Ack
from services.pilot import proxy_status
from services.pilot.proxy_status import MAX_CRED_CACHE, MAX_NAME, ProxyStatusRecorder

from .test_proxy_status_bus_user import WORKLOADS, Records, bus_user, record


def test_bus_user_at_max_name_is_checked_and_one_over_drops_the_ack() -> None:
    cred = "c" * (MAX_NAME - len("proxy."))
    store = Records({cred: record(cred, "shop", "cart")})
    assert bus_user(store, "victim", "proxy." + cred) == "proxy." + cred
    over = Ack(proxy_id="victim", epoch="e", seq=1, version=1, bus_user="proxy." + cred + "c")
    assert "bus_user" in proxy_status._refusal(over)


def test_empty_and_path_like_credential_ids_are_not_believed() -> None:
    store = Records({"own": record("own", "shop", "cart")})
    for user in ("proxy.", "proxy./own", "proxy.../own", "proxy.own/..", "proxy.own/"):
        assert bus_user(store, "victim", user) == "", user


def test_a_flood_of_distinct_users_costs_one_read_per_ack_and_the_cache_stays_bounded() -> None:
    store = Records({"own": record("own", "shop", "cart")})
    recorder = ProxyStatusRecorder(store, workload=WORKLOADS.get)  # type: ignore[arg-type]
    n = MAX_CRED_CACHE + 1

    async def flood() -> None:
        for i in range(n):
            ack = Ack(proxy_id="victim", epoch="e", seq=1, version=1, bus_user=f"proxy.x{i}")
            assert await recorder.bus_user_for(ack) == ""
            assert len(recorder.cred_identity) <= MAX_CRED_CACHE
        # an unregistered proxy_id costs no read at all
        before = store.reads
        await recorder.bus_user_for(Ack(proxy_id="nobody", epoch="e", seq=1, version=1, bus_user="proxy.y"))
        assert store.reads == before
    asyncio.run(flood())
    assert store.reads == n  # never more than one read per ACK

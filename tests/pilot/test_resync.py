"""services/pilot/resync.py: which proxies lag behind the pushed version long enough to get an empty push."""

from __future__ import annotations

import pytest

from proto.xds import ProxyStatus
from services.pilot.pusher import Pusher
from services.pilot.resync import ENV, StaleWatch, interval_from_env


def status(proxy_id: str, version: int, ok: bool = True) -> ProxyStatus:
    return ProxyStatus(proxy_id=proxy_id, version=version, ok=ok)


def test_a_proxy_behind_for_a_whole_interval_is_due_and_its_clock_restarts() -> None:
    watch = StaleWatch(interval=5.0)
    statuses = [status("a", 30), status("b", 27)]
    assert watch.needs_resync(statuses, 30, now=100.0) == []  # first seen behind: not yet
    assert watch.needs_resync(statuses, 30, now=104.9) == []
    assert watch.needs_resync(statuses, 30, now=105.0) == ["b"]
    assert watch.needs_resync(statuses, 30, now=109.0) == []  # at most one push per interval for it
    assert watch.needs_resync(statuses, 30, now=110.0) == ["b"]


def test_a_proxy_that_caught_up_is_forgotten() -> None:
    watch = StaleWatch(interval=5.0)
    watch.needs_resync([status("b", 27)], 30, now=100.0)
    assert watch.needs_resync([status("b", 30)], 30, now=103.0) == []
    assert watch.needs_resync([status("b", 27)], 31, now=106.0) == []  # behind again: a new clock
    assert watch.needs_resync([status("b", 27)], 31, now=111.0) == ["b"]


def test_nacking_and_unregistered_proxies_never_cause_a_push() -> None:
    watch = StaleWatch(interval=1.0)
    statuses = [status("refused", 10, ok=False), status("gone", 10)]
    for now in (0.0, 1.0, 2.0, 3.0):
        assert watch.needs_resync(statuses, 30, now, registered={"refused"}) == []


def test_the_empty_push_is_the_next_in_sequence_and_changes_nothing() -> None:
    pusher = Pusher()
    before = pusher.seq
    push = pusher.nudge()
    assert (push.epoch, push.seq, push.version) == (pusher.epoch, before + 1, pusher.version)
    assert not (push.clusters or push.routes or push.security or push.gateways or push.full)
    assert pusher.pushed_version == 0  # an empty push is not a config version


def test_the_interval_setting_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert interval_from_env() == 5.0
    monkeypatch.setenv(ENV, "0.1")
    assert interval_from_env() == 0.1
    for bad in ("0.09", "3600.1", "nan", "soon"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ValueError, match=ENV):
            interval_from_env()

"""proxy/identity/schedule.py: renewal at about half life, jitter, bounded backoff."""

from __future__ import annotations

from proxy.identity.schedule import Backoff, renew_at, rotation_delay


def test_renewal_is_at_half_life_without_jitter() -> None:
    assert renew_at(1000, 3000, 0.5, 0.0) == 2000


def test_jitter_moves_renewal_by_at_most_the_jitter_either_way() -> None:
    early = renew_at(0, 86400, 0.5, 0.01, uniform=lambda a, b: b)  # more grace left: earlier
    late = renew_at(0, 86400, 0.5, 0.01, uniform=lambda a, b: a)
    assert early == 86400 * 0.49 and late == 86400 * 0.51
    for _ in range(200):
        assert early <= renew_at(0, 86400) <= late


def test_a_grace_ratio_near_one_renews_soon_after_issue() -> None:
    """What the renewal tests use: 0.95 of a 60 s certificate's life remaining is at 3 s."""
    assert renew_at(100, 160, 0.95, 0.0) == 103


def test_renewal_stays_within_the_validity() -> None:
    assert renew_at(0, 100, 2.0, 0.0) == 0 and renew_at(0, 100, -1.0, 0.0) == 100


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    mid = lambda a, b: (a + b) / 2  # noqa: E731  (no jitter: the midpoint of ±25% is 1)
    backoff = Backoff(first=1, cap=8)
    assert [backoff.next(uniform=mid) for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    backoff.reset()
    assert backoff.next(uniform=mid) == 1


def test_backoff_jitter_is_bounded() -> None:
    backoff = Backoff(first=4, cap=4)
    for _ in range(100):
        assert 3 <= backoff.next() <= 5


def test_backoff_never_waits_past_a_quarter_of_the_remaining_life() -> None:
    mid = lambda a, b: (a + b) / 2  # noqa: E731
    backoff = Backoff(first=1, cap=30)
    for _ in range(6):
        backoff.next(uniform=mid)
    assert backoff.next(remaining=20, uniform=mid) == 5
    assert backoff.next(remaining=1, uniform=mid) == 0.5  # never a busy loop
    assert backoff.next(remaining=None, uniform=mid) == 30


def test_rotation_delay_is_spread_over_the_window() -> None:
    assert rotation_delay(10, uniform=lambda a, b: b) == 10
    assert rotation_delay(0) == 0
    assert all(0 <= rotation_delay(10) <= 10 for _ in range(100))

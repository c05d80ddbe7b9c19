"""A refused client's retry wait: doubling from RECONNECT_WAIT, at most REFUSED_WAIT_MAX, for any run of refusals."""

from __future__ import annotations

from runtime.bus import RECONNECT_WAIT, REFUSED_WAIT_MAX, refused_wait


def test_the_refused_wait_doubles_up_to_its_bound_and_stays_there() -> None:
    assert refused_wait(0) == RECONNECT_WAIT and refused_wait(1) == 2 * RECONNECT_WAIT
    waits = [refused_wait(n) for n in range(12)]
    assert waits == sorted(waits) and max(waits) == REFUSED_WAIT_MAX  # reaches the bound, never past it
    below = [w for w in waits if w < REFUSED_WAIT_MAX]
    assert below[-1] * 2 > REFUSED_WAIT_MAX  # one more doubling would pass it: the bound, not the doubling, holds


def test_a_long_run_of_refusals_does_not_overflow() -> None:
    """Found by an attack: min(0.25 * 2 ** refusals, 5) raised OverflowError at 1024 refusals (a revoked
    sidecar retrying every 5 s gets there in about 85 minutes), inside nats-py's error callback."""
    for refusals in (1023, 1024, 1025, 10**6):
        assert refused_wait(refusals) == REFUSED_WAIT_MAX

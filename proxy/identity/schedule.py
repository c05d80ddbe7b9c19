"""When to renew, and how long to wait after a failed try. Pure arithmetic on Unix seconds.

Istio's agent rotates a certificate when `SECRET_GRACE_PERIOD_RATIO` (0.5) of its life remains, moved by up to
`SECRET_GRACE_PERIOD_RATIO_JITTER` (0.01) either way so that workloads started together do not all come
back to the ca at once; we do the same (ISTHMUS_SECRET_GRACE_PERIOD_RATIO, ..._JITTER; docs/security.md).
The life counted is from when we received the certificate (the ca backdates notBefore a minute for clock
skew, which would otherwise make a 60 s certificate due at once, and each renewal due again: a loop).
A failed try is retried after a bounded, jittered, doubling wait, never longer than a quarter of what is
left of the certificate's life (so a short-lived certificate still gets several tries before it expires).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

GRACE_RATIO = 0.5
GRACE_JITTER = 0.01
RETRY_FIRST = 1.0  # seconds after the first failure
RETRY_MAX = 30.0  # seconds: the longest wait between tries
ROTATION_SPREAD = 10.0  # seconds: a root rotation's renewals spread over [0, this) per workload


def check_grace(ratio: float, jitter: float) -> None:
    """ValueError unless 0 < ratio - jitter and ratio + jitter < 1: a renewal always falls inside a fresh
    certificate's life, never at its start (a renewal loop) nor at its end (an expiry)."""
    if not (0 <= jitter and 0 < ratio - jitter and ratio + jitter < 1):
        raise ValueError(f"the grace period ratio {ratio:g} with jitter {jitter:g} must stay within (0, 1)")


def renew_at(not_before: float, not_after: float, ratio: float = GRACE_RATIO, jitter: float = GRACE_JITTER,
             uniform: Callable[[float, float], float] = random.uniform) -> float:
    """The Unix time to renew a certificate valid over [not_before, not_after): when `ratio` (± up to
    `jitter`) of its life remains; never before not_before, never after not_after. Pass as not_before the
    time it was received when that is later (see the module docstring)."""
    grace = ratio + (uniform(-jitter, jitter) if jitter else 0.0)
    grace = min(1.0, max(0.0, grace))
    return not_after - grace * (not_after - not_before)


def rotation_delay(spread: float = ROTATION_SPREAD,
                   uniform: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before renewing because the bundle gained a root that did not sign our certificate."""
    return uniform(0.0, spread) if spread > 0 else 0.0


@dataclass
class Backoff:
    """Doubling waits from `first` to `cap` seconds, each jittered by ±25%; reset() after a success."""

    first: float = RETRY_FIRST
    cap: float = RETRY_MAX
    current: float = 0.0

    def next(self, remaining: float | None = None,
             uniform: Callable[[float, float], float] = random.uniform) -> float:
        """The wait before the next try; `remaining`: seconds the certificate still lives (None: none held,
        or it has expired), which bounds the wait to a quarter of it (at least 0.5 s)."""
        self.current = self.first if not self.current else min(self.current * 2, self.cap)
        wait = self.current * uniform(0.75, 1.25)
        if remaining is not None and remaining > 0:
            wait = min(wait, max(0.5, remaining / 4))
        return wait

    def reset(self) -> None:
        self.current = 0.0

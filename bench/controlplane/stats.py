"""Percentiles, histograms and plain-text tables. Times are in seconds in, milliseconds out."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

# Upper bounds (ms) of the histogram buckets; the last bucket is +Inf. Istio's
# pilot_proxy_convergence_time uses 0.1, 0.5, 1, 3, 5, 10, 20, 30 s: ours are finer at the low end.
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def histogram(values_ms: Iterable[float]) -> dict[str, int]:
    counts = {f"le_{b}": 0 for b in BUCKETS_MS}
    counts["le_inf"] = 0
    for v in values_ms:
        for b in BUCKETS_MS:
            if v <= b:
                counts[f"le_{b}"] += 1
                break
        else:
            counts["le_inf"] += 1
    return counts


def summary(values_s: Iterable[float], expected: int | None = None) -> dict[str, Any]:
    """count, p50/p90/p99/max/mean (ms) and a histogram of a sample of durations in seconds."""
    ms = sorted(v * 1000.0 for v in values_s)
    out: dict[str, Any] = {"count": len(ms)}
    if expected is not None:
        out["expected"] = expected
        out["missing"] = max(0, expected - len(ms))
    if ms:
        out.update(p50_ms=round(percentile(ms, 50), 3), p90_ms=round(percentile(ms, 90), 3),
                   p99_ms=round(percentile(ms, 99), 3), max_ms=round(ms[-1], 3), min_ms=round(ms[0], 3),
                   mean_ms=round(sum(ms) / len(ms), 3))
    out["histogram_ms"] = histogram(ms)
    return out


def median(values: Iterable[float]) -> float:
    v = sorted(values)
    return percentile(v, 50) if v else math.nan


def fmt_ms(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if v >= 1000:
        return f"{v / 1000:.2f}s"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def histogram_line(hist: dict[str, int]) -> str:
    """`<=5ms:0 <=10ms:12 ...` without the empty tail and head."""
    items = [(k[3:], v) for k, v in hist.items()]
    nonzero = [i for i, (_, v) in enumerate(items) if v]
    if not nonzero:
        return "(empty)"
    lo, hi = nonzero[0], nonzero[-1]
    return " ".join(f"<={k}{'ms' if k != 'inf' else ''}:{v}" for k, v in items[lo:hi + 1])

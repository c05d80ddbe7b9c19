"""CPU seconds and RSS of processes, sampled from /proc every `interval` seconds in a thread.

    ProcSampler({"pilot": pid, ...}).start()
    sampler.window(t0, t1) -> {"pilot": {"cpu_s", "cpu_pct", "rss_peak_mb", "rss_end_mb"}, ...}

cpu_pct is percent of one core averaged over the window (200 = both cores of this machine).
Resolution: the kernel's clock tick (1/SC_CLK_TCK s, usually 10 ms) and the sampling interval.
"""

from __future__ import annotations

import bisect
import os
import threading
import time

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def read(pid: int) -> tuple[float, int] | None:
    """(utime + stime in seconds, RSS in bytes) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # comm may contain spaces: split after its ')'
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # stat(5) fields 14 and 15
    rss = int(fields[21]) * _PAGE  # field 24: resident pages
    return cpu, rss


class ProcSampler:
    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procstat", daemon=True)
        self._lock = threading.Lock()

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self.pids[name] = pid
            self.samples.setdefault(name, [])

    def replace(self, name: str, pid: int) -> None:
        """A restarted process: a new pid and a new series (CPU counters start again from zero)."""
        with self._lock:
            self.pids[name] = pid
            self.samples[name] = []

    def start(self) -> ProcSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _sample(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name, pid in self.pids.items():
                got = read(pid)
                if got is not None:
                    self.samples[name].append((now, got[0], got[1]))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def window(self, t0: float, t1: float) -> dict[str, dict[str, float]]:
        self._sample()
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for name, series in self.samples.items():
                if not series:
                    continue
                times = [s[0] for s in series]
                i0 = max(0, bisect.bisect_right(times, t0) - 1)  # last sample at or before t0
                i1 = min(len(series) - 1, max(i0, bisect.bisect_left(times, t1)))  # first at or after t1
                part = series[i0:i1 + 1]
                span = part[-1][0] - part[0][0]
                cpu = part[-1][1] - part[0][1]
                out[name] = {
                    "cpu_s": round(cpu, 3),
                    "cpu_pct": round(100 * cpu / span, 1) if span > 0 else 0.0,
                    "rss_peak_mb": round(max(s[2] for s in part) / 2**20, 1),
                    "rss_end_mb": round(part[-1][2] / 2**20, 1),
                }
        return out

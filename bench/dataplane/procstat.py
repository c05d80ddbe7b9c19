"""CPU time and memory of a process, read from /proc (Linux only).

    cpu_seconds(pid)    utime + stime of the process, all its threads, in seconds
    cpu_split(pid)      (utime, stime) in seconds: user space and kernel apart
    context_switches(pid)  (voluntary, involuntary) context switches since start
    rss_peak_kb(pid)    VmHWM: the peak resident set size (kB) since start or the last reset
    reset_peak(pid)     write 5 to /proc/<pid>/clear_refs so VmHWM restarts from the current RSS
    Sampler             a CPU-time window: start(), stop() -> ProcWindow(cpu_s, wall_s, peak_rss_kb)

Children are not counted (nginx's worker is its own pid: sample it, not the master).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / _TICKS


def cpu_split(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary): the process's main thread, from /proc/<pid>/status (proc(5))."""
    return _status_kb(pid, b"voluntary_ctxt_switches:"), _status_kb(pid, b"nonvoluntary_ctxt_switches:")


def _status_kb(pid: int, key: bytes) -> int:
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def rss_peak_kb(pid: int) -> int:
    return _status_kb(pid, b"VmHWM:")


def rss_kb(pid: int) -> int:
    return _status_kb(pid, b"VmRSS:")


def reset_peak(pid: int) -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0, needs ptrace rights: our own children, or root)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@dataclass
class ProcWindow:
    cpu_s: float
    wall_s: float
    peak_rss_kb: int
    peak_reset: bool  # False: the peak is since process start (clear_refs refused)

    @property
    def cpu_util(self) -> float:
        """Cores used on average over the window (1.0 = one core busy all the time)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Sampler:
    """CPU seconds and peak RSS of one pid over a window of time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._reset = False

    def start(self) -> "Sampler":
        self._reset = reset_peak(self.pid)
        self._cpu0 = cpu_seconds(self.pid)
        self._t0 = time.monotonic()
        return self

    def stop(self) -> ProcWindow:
        cpu = cpu_seconds(self.pid) - self._cpu0
        wall = time.monotonic() - self._t0
        return ProcWindow(cpu, wall, rss_peak_kb(self.pid), self._reset)


# ------------------------------------------------------------------------------ the machine around us


def children(pid: int) -> list[int]:
    """Direct children of pid (e.g. nginx's worker), from /proc/<pid>/task/*/children."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return found


def _system_jiffies() -> tuple[int, int]:
    """(busy, steal) jiffies of all CPUs since boot; busy excludes idle, iowait and steal."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class MachineWindow:
    busy_cores: float  # every CPU of the machine, averaged over the window
    ours_cores: float  # the benchmark's processes and the load generators it waited for
    steal_cores: float  # taken by the hypervisor

    @property
    def other_cores(self) -> float:
        """CPU used by work that is not this benchmark: what made this window noisy."""
        return max(self.busy_cores - self.ours_cores, 0.0)


class MachineSampler:
    """System-wide CPU over a window, split into ours (given pids + reaped children) and everyone else's."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def _ours(self) -> float:
        total = _children_cpu()
        for pid in self.pids:
            try:
                total += cpu_seconds(pid)
            except OSError:
                pass
        return total

    def start(self) -> "MachineSampler":
        self._busy0, self._steal0 = _system_jiffies()
        self._ours0 = self._ours()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> MachineWindow:
        busy, steal = _system_jiffies()
        ours = self._ours() - self._ours0
        wall = max(time.monotonic() - self._t0, 1e-9)
        return MachineWindow((busy - self._busy0) / _TICKS / wall, ours / wall, (steal - self._steal0) / _TICKS / wall)

"""Where each proxy process's CPU per request goes: user space and kernel apart, with the system calls and
context switches a request costs. `python -m bench.dataplane.profile --cpu ROW... [--rate RPS]` prints it.

The load is wrk at max (closed loop, 32 connections), or with `--rate` the fixed-rate pacing of `make bench`
(loadgen.hey_paced: ten streams, arrivals spread evenly), the same figure as the bench's "CPU at 1,000 rps".
Per process, read around the load: utime and stime from /proc/<pid>/stat, context switches from
/proc/<pid>/status, and system calls counted by `perf stat -e raw_syscalls:sys_enter -p PID` (-1 when perf
or the tracepoint is not available: it needs root or perf_event_paranoid <= 1).

Why: the bare Python pass-through makes the same system calls and context switches per request as our
sidecar, so a gap in user time is our own Python work, and a gap in kernel time with the same calls is the
cache our work evicts (docs/performance.md "Where the CPU goes, user and kernel").
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from dataclasses import dataclass

from bench.dataplane import loadgen
from bench.dataplane.procstat import context_switches, cpu_split
from bench.dataplane.topology import HOST_HEADER, Topology

__all__ = ["Cost", "cpu_per_request", "perf_count", "print_medians"]


@dataclass
class Cost:
    """One proxy process over one load window, per request: µs of user and kernel CPU, system calls (-1:
    not counted) and context switches."""

    user_us: float
    sys_us: float
    syscalls: float
    voluntary: float
    involuntary: float

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.sys_us


def _count_syscalls(pid: int, seconds: float) -> subprocess.Popen[str] | None:
    if shutil.which("perf") is None:
        return None
    return subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid), "--",
                             "sleep", f"{seconds:g}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _syscalls(proc: subprocess.Popen[str] | None) -> int:
    if proc is None:
        return -1
    _, err = proc.communicate(timeout=120)
    return perf_count(err)


def perf_count(text: str) -> int:
    """The count of `perf stat -x,` output's first event line (`12345,,raw_syscalls:sys_enter,...`); -1 when
    perf counted nothing (`<not supported>`, `<not counted>`) or printed an error instead."""
    for line in text.splitlines():
        first = line.split(",")[0].strip()
        if first.isdigit():
            return int(first)
        if first.startswith("<"):
            return -1
    return -1


def _window(topo: Topology, row: str, seconds: int, core: int | None, rate: int) -> tuple[float, dict[str, Cost]]:
    port, procs = topo.rows[row]
    url = f"http://127.0.0.1:{port}/"
    loadgen.wrk(url, duration=1, host=HOST_HEADER, core=core)  # warms the pools; not counted
    counters = {role: _count_syscalls(pid, seconds) for role, pid in procs}
    before = {role: (cpu_split(pid), context_switches(pid)) for role, pid in procs}
    if rate:
        paced = loadgen.hey_paced(url, streams=10, rate_per_stream=rate / 10, duration=seconds, host=HOST_HEADER,
                                  core=core)
        rps, requests = paced.rps, paced.requests
    else:
        result = loadgen.wrk(url, duration=seconds, host=HOST_HEADER, core=core)
        rps, requests = result.rps, result.requests
    after = {role: (cpu_split(pid), context_switches(pid)) for role, pid in procs}
    n = max(requests, 1)
    costs: dict[str, Cost] = {}
    for role, _pid in procs:
        (u0, s0), (v0, i0) = before[role]
        (u1, s1), (v1, i1) = after[role]
        calls = _syscalls(counters[role])
        costs[role] = Cost((u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6, calls / n if calls >= 0 else -1.0,
                           (v1 - v0) / n, (i1 - i0) / n)
    return rps, costs


def _line(row: str, rps: float, costs: dict[str, Cost]) -> str:
    return f"{row:<20} rps {rps:>9.0f}  " + "  ".join(
        f"{role} {c.cpu_us:6.1f} us/req (user {c.user_us:5.1f} sys {c.sys_us:5.1f}, syscalls {c.syscalls:4.2f}, "
        f"ctx sw {c.voluntary + c.involuntary:4.2f})" for role, c in costs.items())


def cpu_per_request(topo: Topology, rows: list[str], seconds: int, rounds: int, core: int | None,
                    rate: int = 0) -> dict[str, list[tuple[float, dict[str, Cost]]]]:
    """row -> [(rps, {role: Cost})] per round, rows alternated within each round; `rate` 0: wrk at max."""
    found: dict[str, list[tuple[float, dict[str, Cost]]]] = {row: [] for row in rows}
    for _ in range(rounds):
        for row in rows:
            rps, costs = _window(topo, row, seconds, core, rate)
            found[row].append((rps, costs))
            print(_line(row, rps, costs), flush=True)
    return found


def print_medians(found: dict[str, list[tuple[float, dict[str, Cost]]]]) -> None:
    print("\nmedian of rounds (per request per proxy: CPU µs, user and kernel µs, system calls, context switches)")
    for row, runs in found.items():
        medians = {role: Cost(*(statistics.median(getattr(per[role], f) for _, per in runs)
                                for f in ("user_us", "sys_us", "syscalls", "voluntary", "involuntary")))
                   for role in runs[0][1]}
        print(_line(row, statistics.median(r for r, _ in runs), medians))

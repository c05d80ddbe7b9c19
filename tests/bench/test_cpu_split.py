"""bench/dataplane/cpu_split.py and procstat's user/kernel split: what `profile --cpu` reads per process."""

from __future__ import annotations

import os
import time

from bench.dataplane.cpu_split import perf_count
from bench.dataplane.procstat import context_switches, cpu_split


def test_user_time_grows_with_python_work_and_kernel_time_is_apart() -> None:
    user0, sys0 = cpu_split(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # user space only
        sum(range(1000))
    user1, sys1 = cpu_split(os.getpid())
    assert user1 - user0 >= 0.2  # the ticks are 10 ms: 0.3 s of work reads at least 0.2 s
    assert sys1 - sys0 < user1 - user0


def test_sleeping_counts_voluntary_context_switches() -> None:
    voluntary0, _ = context_switches(os.getpid())
    for _ in range(20):
        time.sleep(0.001)
    voluntary1, _ = context_switches(os.getpid())
    assert voluntary1 - voluntary0 >= 20


def test_perf_count_reads_the_first_event_or_nothing() -> None:
    assert perf_count("48211,,raw_syscalls:sys_enter,4003861876,100.00,,\n") == 48211
    assert perf_count("<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n") == -1
    assert perf_count("Error:\nNo permission to enable raw_syscalls:sys_enter event.\n") == -1
    assert perf_count("") == -1

"""Per test run: a slice of the free-port range per xdist worker, and a last-resort watchdog per test for
hangs that pytest-timeout cannot end.

pytest-timeout's thread needs the GIL to act; a thread stuck in C while holding it (a fork blocked in a
library's prefork handler, as gRPC's once did: runtime/grpc_fork.py) leaves it waiting forever, and CI then
waits for its 90 minutes. faulthandler's watchdog is a C thread: past the test's timeout plus a grace it dumps
every thread's Python stack and ends the worker (xdist reports the test as crashed and starts another).
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator

import pytest
from pytest_timeout import get_env_settings

from isthmus.launch.ports import PORT_FLOOR, PORT_RANGE_VARIABLE, port_range

GRACE_S = 60  # after pytest-timeout's own limit, which acts first whenever it can


def _worker_port_range() -> None:
    """Each xdist worker (and every process it starts, which inherits the variable) picks free ports from a
    slice of its own, so two workers cannot pick the same port in the moment before it is bound: a demo's
    sidecar once lost its port that way."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit()) or os.environ.get(
            PORT_RANGE_VARIABLE):
        return
    low, top = PORT_FLOOR, port_range()[1]
    span = (top - low) // int(count)
    first = low + int(worker[2:]) * span
    os.environ[PORT_RANGE_VARIABLE] = f"{first}-{first + span - 1}"


_worker_port_range()


def _timeout_of(item: pytest.Item) -> float:
    if item.config.getoption("usepdb", False) or item.config.getoption("trace", False):
        return 0.0  # under a debugger a test may stop for as long as one looks at it (pytest-timeout: the same)
    marker = item.get_closest_marker("timeout")
    if marker is not None and (marker.args or "timeout" in marker.kwargs):
        return float(marker.kwargs.get("timeout", marker.args[0] if marker.args else 0))
    # as pytest-timeout resolves it: `--timeout`, else PYTEST_TIMEOUT, else the ini value (`--timeout 0`: none)
    return float(get_env_settings(item.config).timeout or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    limit = _timeout_of(item)
    if limit > 0:
        faulthandler.dump_traceback_later(limit + GRACE_S, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        if limit > 0:
            faulthandler.cancel_dump_traceback_later()

"""A last-resort watchdog per test, for hangs that pytest-timeout cannot end.

pytest-timeout's thread needs the GIL to act; a thread stuck in C while holding it (a fork blocked in a
library's prefork handler, as gRPC's once did: runtime/grpc_fork.py) leaves it waiting forever, and CI then
waits for its 90 minutes. faulthandler's watchdog is a C thread: past the test's timeout plus a grace it dumps
every thread's Python stack and ends the worker (xdist reports the test as crashed and starts another).
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator

import pytest
from pytest_timeout import get_env_settings

GRACE_S = 60  # after pytest-timeout's own limit, which acts first whenever it can


def _timeout_of(item: pytest.Item) -> float:
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

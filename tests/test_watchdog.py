"""tests/conftest.py's faulthandler watchdog ends a worker past the test's own timeout plus a grace: the timeout
pytest-timeout applies, which a `--timeout` or PYTEST_TIMEOUT overrides over the ini value (a marker over all)."""

from __future__ import annotations

import pytest

from tests.conftest import _timeout_of


def test_the_watchdog_takes_the_command_lines_and_the_environments_timeout(request: pytest.FixtureRequest,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request.config.option, "timeout", 900.0)  # `pytest --timeout 900`
    assert _timeout_of(request.node) == 900.0
    monkeypatch.setattr(request.config.option, "timeout", 0.0)  # `--timeout 0`: pytest-timeout off, so is this
    assert _timeout_of(request.node) == 0.0
    monkeypatch.setattr(request.config.option, "timeout", None)
    monkeypatch.setenv("PYTEST_TIMEOUT", "700")
    assert _timeout_of(request.node) == 700.0


@pytest.mark.timeout(5)
def test_a_marker_wins_over_the_command_line(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request.config.option, "timeout", 900.0)
    assert _timeout_of(request.node) == 5.0


def test_no_watchdog_under_a_debugger(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request.config.option, "timeout", 900.0)
    monkeypatch.setattr(request.config.option, "usepdb", True)  # `pytest --pdb`
    assert _timeout_of(request.node) == 0.0
    monkeypatch.setattr(request.config.option, "usepdb", False)
    monkeypatch.setattr(request.config.option, "trace", True)  # `pytest --trace`
    assert _timeout_of(request.node) == 0.0

"""runtime/log.py: the level changes at runtime, for loggers already made and cached too."""

from __future__ import annotations

import io

import pytest
import structlog

from runtime import log as runtime_log


def test_set_level_reaches_a_logger_made_and_used_before_the_change(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    runtime_log.configure("info", "t")
    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=out))
    logger = runtime_log.get_logger("early")
    logger.info("first")  # cached on first use
    logger.debug("hidden")
    assert "first" in out.getvalue() and "hidden" not in out.getvalue()
    assert runtime_log.set_level("debug") == "info"
    logger.debug("shown")
    assert "shown" in out.getvalue()
    assert runtime_log.set_level("error") == "debug"
    logger.warning("quiet")
    logger.error("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()
    assert runtime_log.level_name() == "error"
    runtime_log.set_level("info")


def test_an_unknown_level_is_refused_and_changes_nothing() -> None:
    runtime_log.set_level("warning")
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        runtime_log.set_level("verbose")
    assert runtime_log.level_name() == "warning"
    runtime_log.set_level("info")

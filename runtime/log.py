"""structlog configured once per process: JSON lines on stderr, level from settings, changeable at runtime.

`set_level("debug")` changes the level of every logger of the process at once, those already made and
cached included (`isthmus admin log SERVICE --level`, `isthmus proxy log PROXY --level`: docs/cli.md). The
loggers are instances of one class whose level methods are swapped on the class: a disabled level stays a
bare `return None`, as with structlog's own filtering loggers, so debug logging costs nothing when off.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from runtime.hidden_imports import modules_hidden

# structlog's package imports structlog.dev (ConsoleRenderer) and structlog.tracebacks, which import rich (and
# pygments through it) whenever it is installed (it is: the CLI's tables). Our processes log JSON lines and
# format tracebacks with the stdlib (format_exc_info), never through rich, which costs every process that loads
# it ~5 MB of RSS: it is hidden while structlog loads, unless this process has loaded it already. Both modules
# set rich = None on the ImportError they then get; rich stays importable afterwards (isthmus/tables.py).
with modules_hidden("rich", "better_exceptions"):
    import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LEVELS = tuple(_LEVELS)  # the names set_level accepts
_NAMES = {logging.CRITICAL: "critical", logging.ERROR: "error", logging.WARNING: "warning", logging.INFO: "info",
          logging.DEBUG: "debug"}
_ALIASES = {"fatal": "critical", "warn": "warning", "msg": "info"}
_ENABLED: Any = structlog.make_filtering_bound_logger(logging.DEBUG)  # every level on: the methods we copy
_current = logging.INFO


def _nop(self: Any, event: str, *args: Any, **kw: Any) -> Any:
    return None


async def _anop(self: Any, event: str, *args: Any, **kw: Any) -> Any:
    return None


class RuntimeLevelLogger(_ENABLED):  # type: ignore[misc,valid-type]
    """structlog's filtering logger whose level is the process's current one (set_level)."""

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        return None if level < _current else _ENABLED.log(self, level, event, *args, **kw)

    async def alog(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        return None if level < _current else await _ENABLED.alog(self, level, event, *args, **kw)

    def is_enabled_for(self, level: int) -> bool:
        return level >= _current

    def get_effective_level(self) -> int:
        return _current


def level_name() -> str:
    """The process's current level: debug, info, warning or error."""
    return _NAMES.get(_current, "info")


def set_level(level: str) -> str:
    """Make `level` (debug|info|warning|error) the level of every logger in the process, now; returns the
    level it replaced. ValueError for another name."""
    global _current
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    before = level_name()
    _current = numeric
    for value, name in _NAMES.items():
        on = value >= numeric
        setattr(RuntimeLevelLogger, name, getattr(_ENABLED, name) if on else _nop)
        setattr(RuntimeLevelLogger, f"a{name}", getattr(_ENABLED, f"a{name}") if on else _anop)
    for alias, name in _ALIASES.items():
        setattr(RuntimeLevelLogger, alias, getattr(RuntimeLevelLogger, name))
        setattr(RuntimeLevelLogger, f"a{alias}", getattr(RuntimeLevelLogger, f"a{name}"))
    return before


def configure(level: str = "info", service: str = "") -> structlog.stdlib.BoundLogger:
    set_level(level if level.lower() in _LEVELS else "info")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=RuntimeLevelLogger,
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    return structlog.get_logger()


def get_logger(name: str = "") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name) if name else structlog.get_logger()

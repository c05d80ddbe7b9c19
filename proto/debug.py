"""Troubleshooting messages: what one proxy holds (its config dump, over the bus) and runtime log levels.

`isthmus.proxy.debug.<bus credential id>` (proto/subjects.py proxy_debug_subject): ProxyDebugRequest ->
ProxyDebugReply, operator only. The proxy answers only a request naming its own proxy id (several proxies
may share one credential). A dump is JSON text sent in chunks: the reply carries `body` from `offset`, the
whole body's `total` size and `digest` (so chunks of two different dumps are never joined), and the CLI
asks again from `offset + len(body)` until it has `total` characters; the proxy refuses a dump larger than
MAX_DUMP characters (the operator asks for one section at a time). Secrets are never in a dump: the
`secret` section carries certificates' subjects, SANs, serials and expiry, never a key.

`isthmus.admin.log.<service>` (admin_log_subject): LogLevelRequest -> LogLevelReply, operator only; every
replica of the service answers, so the CLI gathers replies until its timeout.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.base import Message

SECTIONS = ("routes", "clusters", "endpoints", "listeners", "secret", "all")
MAX_DUMP = 16 * 1024 * 1024  # characters of one section's JSON a proxy sends (in chunks): the bug report's bound
LogLevel = Annotated[str, msgspec.Meta(max_length=16)]


class ProxyDebugRequest(Message):
    """`what`: "config" (the dump's `section`, from character `offset`), "log" (set the level to `level`,
    "" to read it), "info" (id, version, uptime only). `chunk`: characters per reply (the proxy caps it)."""

    proxy_id: Annotated[str, msgspec.Meta(max_length=253)]
    what: Annotated[str, msgspec.Meta(max_length=16)] = "config"
    section: Annotated[str, msgspec.Meta(max_length=16)] = "all"
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    chunk: Annotated[int, msgspec.Meta(ge=1)] = 256 * 1024
    level: LogLevel = ""


class ProxyDebugReply(Message):
    ok: bool
    proxy_id: str = ""
    version: str = ""  # the proxy's Isthmus version
    kind: str = ""  # "sidecar" | "gateway"
    body: str = ""  # JSON text: `total` characters from `offset`
    offset: int = 0
    total: int = 0
    digest: str = ""  # of the whole body: the chunks of one dump carry the same
    level: str = ""  # the log level now (after a change)
    previous_level: str = ""
    error: str = ""


class LogLevelRequest(Message):
    """`level` "": only report the current level."""

    level: LogLevel = ""


class LogLevelReply(Message):
    ok: bool
    service: str = ""
    instance: str = ""
    level: str = ""
    previous_level: str = ""
    version: str = ""
    error: str = ""

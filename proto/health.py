"""Readiness replies: every service answers `isthmus.health.<service>` while it is ready."""

from __future__ import annotations

from proto.base import Message


class HealthReply(Message):
    service: str
    instance: str
    ready: bool
    leader: bool = False
    detail: str = ""

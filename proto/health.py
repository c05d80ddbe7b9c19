"""Readiness replies: every service answers `isthmus.health.<service>` while it is ready."""

from __future__ import annotations

from proto.base import Message


class HealthReply(Message, omit_defaults=False):
    """Every field is always present (docs/bus.md): `leader` is false for a service without an election."""

    service: str
    instance: str
    ready: bool
    leader: bool = False
    detail: str = ""
    version: str = ""  # the replica's Isthmus version (`isthmus version`); "" from a replica older than the field

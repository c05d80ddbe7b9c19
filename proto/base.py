"""Struct bases shared by every schema.

Istio resources use camelCase on the wire and reject unknown fields, so an unsupported field in a
user's YAML is an error with its path instead of being ignored. Internal messages use snake_case and
tolerate unknown fields, so an older peer can read a newer message (msgspec schema evolution: new
fields get defaults, a field never changes type).
"""

from __future__ import annotations

import msgspec


class IstioStruct(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    """A part of an Istio-format resource."""


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A bus message or compiled resource."""

"""Messages as istioctl prints them: `Error [IST0101] (VirtualService default/reviews origin.yaml) Referenced host
not found: "ratings"`, one a line (its "log" format, our `-o table`); or a yaml/json list of
{code, level, origin, reference, message, documentationUrl} as istioctl's -o yaml|json."""

from __future__ import annotations

import json
from typing import Any

import yaml

from isthmus.analyze.messages import Message

COLORS = {"Error": "\033[1;31m", "Warning": "\033[33m"}  # istioctl's: bold red, yellow; Info plain


def line(message: Message, color: bool = False) -> str:
    level = f"{COLORS[message.level]}{message.level}\033[0m" if color and message.level in COLORS else message.level
    origin = f" {message.origin}" if message.origin else ""
    return f"{level} [{message.code}] ({message.resource}{origin}) {message.message}"


def as_dicts(messages: list[Message]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        item: dict[str, Any] = {"code": m.code, "documentationUrl": m.documentation_url, "level": m.level,
                                "message": m.message, "origin": m.resource}
        if m.origin:
            item["reference"] = m.origin
        out.append(item)
    return out


def render(messages: list[Message], output: str, color: bool = False) -> str:
    if output == "json":
        return json.dumps(as_dicts(messages), indent=2)
    if output == "yaml":
        return yaml.safe_dump(as_dicts(messages), sort_keys=True).rstrip("\n") if messages else "[]"
    return "\n".join(line(m, color) for m in messages)

"""The bus's payloads: JSON (msgspec), so a script with the `nats` CLI can read and write every subject."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[type, msgspec.json.Decoder] = {}


class MalformedRequest(msgspec.DecodeError):
    """A request that cannot be read: bad JSON, wrong shape, nesting too deep, a number out of range,
    a malformed Isthmus-Deadline header. Answered "malformed request on <subject>: ...", never applied."""


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def error_reply(message: str) -> bytes:
    """The generic failure reply: every reply type has `ok` and an `error` text (ApplyReply also
    lists ConfigErrors), so a client can always show the reason."""
    return _encoder.encode({"ok": False, "error": message})


def decode(data: bytes, type_: type[T]) -> T:
    """`data` as a `type_`; msgspec.DecodeError (or its MalformedRequest) for anything that cannot be
    read, including nesting too deep for the decoder (RecursionError) and numbers out of range."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(data)
    except msgspec.DecodeError:
        raise
    except RecursionError:
        raise MalformedRequest("the JSON is nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        raise MalformedRequest(f"a value cannot be read: {str(exc)[:200]}") from None

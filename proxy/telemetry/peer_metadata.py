"""The peer metadata exchange: how the called sidecar learns the calling workload (its source_* labels), as
Istio's metadata exchange filter does with x-envoy-peer-metadata.

    header_line(metadata)     `x-isthmus-peer-metadata: <value>\\r\\n`, encoded once at start-up
    PeerMetadataCache.get(v)  the PeerMetadata a header value carries, or None; cached by the raw value

The value is base64url (no padding) of PeerMetadata's fields as a JSON array, in the struct's order, trailing
defaults left out (`["productpage-v1","default","productpage","v1","productpage","v1","unknown","productpage"]`,
~120 bytes encoded): every request between sidecars carries it and both sidecars parse and move it, so it is
kept short (as JSON with its keys it was twice that). New PeerMetadata fields are appended to _Wire. The outbound
listener adds it to the first request of each upstream connection to an endpoint with a sidecar
(Endpoint.sidecar: proxy/http/exchange_connect.py `_tell_peer`) and strips any copy the app sent; the inbound
listener reads it, keeps it for the connection (every request on it comes from the sidecar that opened it) and
sets RequestHead.peer on each of its requests, and removes it before the request reaches the app
(proxy/http/server.py). Istio's Envoy sends x-envoy-peer-metadata on every request; once per connection gives
the same labels for a request's cost of one attribute check. It is a claim, not a proof: anyone who can reach an inbound listener can send one.
What mutual TLS proves wins: source_principal and source_workload_namespace come from the caller's certificate
when there is one (proxy/telemetry/labels.py); the workload, app, version and cluster are as the caller says.

Bounded: a value longer than MAX_VALUE bytes, or one that does not decode, is no metadata (None; its labels
"unknown"); at most CACHE_SIZE values are kept, then the cache starts over.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from proto.observations import PEER_METADATA_HEADER, PeerMetadata
from proxy.core.request import RequestHead

HEADER = PEER_METADATA_HEADER.encode()
_NAME_SP = b"\r\n" + HEADER + b": "  # the line as a sidecar writes it, from the end of the line before
MAX_VALUE = 2048  # bytes of a header value that is read at all (a sidecar's own is a few hundred)
CACHE_SIZE = 1024  # header values whose decoding is kept



class _Wire(msgspec.Struct, array_like=True, omit_defaults=True):
    """PeerMetadata on the wire: its fields in order, as an array (proto.observations.PeerMetadata)."""

    workload: str
    namespace: str
    app: str = "unknown"
    version: str = "unknown"
    canonical_service: str = "unknown"
    canonical_revision: str = "latest"
    cluster: str = "unknown"
    service: str = ""


_decoder = msgspec.json.Decoder(_Wire)
_encoder = msgspec.json.Encoder()


def encode(metadata: PeerMetadata) -> bytes:
    """The header value for `metadata`."""
    wire = _Wire(**msgspec.structs.asdict(metadata))
    return base64.urlsafe_b64encode(_encoder.encode(wire)).rstrip(b"=")


def header_line(metadata: PeerMetadata) -> bytes:
    """The whole header line, CRLF-terminated, as the outbound listener adds it."""
    return HEADER + b": " + encode(metadata) + b"\r\n"


def decode(value: bytes) -> PeerMetadata | None:
    """The PeerMetadata a header value carries, None when it carries none that can be read."""
    if len(value) > MAX_VALUE:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
        return PeerMetadata(**msgspec.structs.asdict(_decoder.decode(raw)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None


class PeerMetadataCache:
    """Decoded header values, so a caller's repeated value is decoded once."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[bytes, PeerMetadata | None] = {}

    def get(self, value: bytes) -> PeerMetadata | None:
        try:
            return self.values[value]
        except KeyError:
            pass
        found = decode(value)
        if len(self.values) >= CACHE_SIZE:
            self.values.clear()
        self.values[value] = found
        return found


_DROP = frozenset((HEADER,))
Headers = list[tuple[bytes, bytes]]


def on_request(peers: PeerMetadataCache | None, head: RequestHead, value: bytes, headers: Headers,
               drop: frozenset[bytes] | None, raw_head: bytes | None
               ) -> tuple[Headers, frozenset[bytes] | None, bytes | None]:
    """A request with the header (`value`; b"" when it came more than once: none is believed), as the server
    reads it (proxy/http/server.py): (headers, drop, raw_head) to send it on with. `peers` (the inbound
    listener's cache): its value becomes head.peer and the header is dropped before the app, cut out of a head
    forwarded as received (`without_header`), else left out when the head is rebuilt (`drop`). None (outbound,
    where only an app can have sent it): removed from the headers, so the one this sidecar adds for a sidecar
    endpoint is the only one."""
    if peers is not None:
        if value:
            head.peer = peers.get(value)
        drop = _DROP if drop is None else drop | _DROP
    else:
        headers = [h for h in headers if h[0] != HEADER]
        head.headers = headers
    if raw_head is not None:  # more than one: rebuilt without any of them
        raw_head = without_header(raw_head, value) if value else None
    return headers, drop, raw_head


def without_header(raw_head: bytes, value: bytes) -> bytes | None:
    """`raw_head` (a request head as received, up to its blank line) without its peer metadata line, whose
    parsed value is `value`, or None when that line is not there as a sidecar writes it (`name: value`, lower-case
    name, one space): the head is then rebuilt from the parsed headers, which drops it by name. A sidecar writes
    it last (proxy/http/exchange_connect.py), so that place is tried first: two compares, a slice and a
    concatenation, no search."""
    at = len(raw_head) - 4 - len(value)  # where the value starts if the line is the last one
    start = at - len(_NAME_SP)
    if start >= 0 and raw_head.startswith(value, at) and raw_head.startswith(_NAME_SP, start):
        return raw_head[:start] + b"\r\n\r\n"
    start = raw_head.find(_NAME_SP)  # elsewhere in the head
    if start < 0:
        return None
    end = start + len(_NAME_SP) + len(value)
    if not (raw_head.startswith(value, start + len(_NAME_SP)) and raw_head.startswith(b"\r\n", end)):
        return None
    return raw_head[:start + 2] + raw_head[end + 2:]

"""The server name (SNI) a TLS client asks for, read from its ClientHello before the handshake, as Envoy's
tls_inspector listener filter reads it for `requested_server_name` (what AuthorizationPolicy's connection.sni
matches): the transports cannot give it on the server side (aiofastnet's engine has no accessor, and a
Python sni_callback on a context aiofastnet uses would be called without its SSL object), so the acceptor
peeks the hello (MSG_PEEK: nothing is consumed) and hands the name to the protocol.

    server_name(data) -> (name, need)     name: the host_name ("" when the hello has none) once `data` holds the
                                          whole ClientHello, else None and `need`, the bytes to wait for
    MAX_CLIENT_HELLO                       Envoy's TLS_MAX_CLIENT_HELLO (64 KiB): a longer hello is refused

Raises ValueError for bytes that are not a TLS ClientHello (the handshake then fails on its own).
"""

from __future__ import annotations

MAX_CLIENT_HELLO = 64 * 1024
_HANDSHAKE, _CLIENT_HELLO, _SERVER_NAME, _HOST_NAME = 0x16, 0x01, 0x0000, 0x00


def _handshake_bytes(data: bytes) -> tuple[bytes, int]:
    """The handshake-layer bytes of the leading handshake records, and the wire bytes the next record needs."""
    out = bytearray()
    off = 0
    while off + 5 <= len(data):
        if data[off] != _HANDSHAKE:
            raise ValueError("not a TLS handshake record")
        length = int.from_bytes(data[off + 3:off + 5], "big")
        end = off + 5 + length
        out += data[off + 5:min(end, len(data))]
        if end > len(data):
            return bytes(out), end
        off = end
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            return bytes(out), off
    return bytes(out), off + 5


def server_name(data: bytes) -> tuple[str | None, int]:
    try:
        return _server_name(data)
    except IndexError:
        raise ValueError("a truncated ClientHello") from None


def _server_name(data: bytes) -> tuple[str | None, int]:
    hs, wire_need = _handshake_bytes(data)
    if len(hs) < 4:
        return None, max(wire_need, len(data) + 1)
    if hs[0] != _CLIENT_HELLO:
        raise ValueError("the first handshake message is not a ClientHello")
    hello_len = int.from_bytes(hs[1:4], "big")
    if len(hs) < 4 + hello_len:
        # at least the rest of this message, plus a record header for each further record
        return None, max(wire_need, len(data) + (4 + hello_len - len(hs)))
    body = memoryview(hs)[4:4 + hello_len]
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos:pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    if pos + 2 > len(body):
        return "", 0  # no extensions
    end = min(len(body), pos + 2 + int.from_bytes(body[pos:pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        kind = int.from_bytes(body[pos:pos + 2], "big")
        size = int.from_bytes(body[pos + 2:pos + 4], "big")
        ext = body[pos + 4:pos + 4 + size]
        pos += 4 + size
        if kind != _SERVER_NAME:
            continue
        at, names_end = 2, min(len(ext), 2 + int.from_bytes(ext[0:2], "big"))
        while at + 3 <= names_end:
            name_type, name_len = ext[at], int.from_bytes(ext[at + 1:at + 3], "big")
            name = bytes(ext[at + 3:at + 3 + name_len])
            at += 3 + name_len
            if name_type == _HOST_NAME:
                return name.decode("ascii", "replace"), 0
        return "", 0
    return "", 0

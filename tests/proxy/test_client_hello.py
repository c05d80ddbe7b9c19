"""proxy/tls/client_hello.py: the SNI of real ClientHellos (OpenSSL's, through the ssl module), partial ones,
and bytes that are not one."""

from __future__ import annotations

import ssl

import pytest

from proxy.tls.client_hello import server_name


def hello(sni: str | None) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def synthetic(sni: bytes, padding: int = 0) -> bytes:
    """A one-record ClientHello with a server_name extension and `padding` bytes of a padding extension."""
    name = b"\x00" + len(sni).to_bytes(2, "big") + sni
    ext = b"\x00\x00" + (len(name) + 2).to_bytes(2, "big") + len(name).to_bytes(2, "big") + name
    ext += b"\x00\x15" + padding.to_bytes(2, "big") + b"\x00" * padding
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(ext).to_bytes(2, "big") + ext
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def test_the_server_name_of_a_client_hello():
    assert server_name(hello("app.example.com")) == ("app.example.com", 0)
    assert server_name(hello(None)) == ("", 0)
    assert server_name(hello("10.0.0.1")) == ("", 0)  # an IP address is never sent as SNI
    assert server_name(synthetic(b"x.test", padding=100)) == ("x.test", 0)


def test_a_partial_hello_says_how_many_bytes_it_needs():
    whole = hello("app.example.com")
    for cut in (1, 4, 5, 9, 60, len(whole) - 1):
        name, need = server_name(whole[:cut])
        assert name is None and cut < need <= len(whole)


def test_a_hello_split_over_two_records_is_read_whole():
    one = synthetic(b"split.test")
    handshake = one[5:]
    two = b"".join(b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
                   for part in (handshake[:20], handshake[20:]))
    assert server_name(two) == ("split.test", 0)
    assert server_name(two[:30])[0] is None


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
                                  b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00"])
def test_what_is_not_a_client_hello_is_a_value_error(data):
    with pytest.raises(ValueError):
        server_name(data)

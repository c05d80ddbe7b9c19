"""A stand-in for the X.509 worker child that misbehaves as X509_TEST_WORKER says (tests/proxy/identity/
test_x509_client.py points x509_client.MODULE here): `sleep`, `garbage`, `flood`, `crash`, `wrong`;
`exit`: gone before its request is written (as a child the OOM killer took); `reply_at` / `reply_over`: a
KeyMade of exactly MAX_REPLY bytes / one byte more; `stderr_line`: dies without a reply after writing one
line of X509_TEST_STDERR bytes on stderr, "E" then "x"s; `stderr_long`: after 256 KiB of noise lines on stderr,
its last line `the last line`."""

from __future__ import annotations

import os
import sys
import time

import msgspec

from proto.identity_worker import MAX_REPLY, KeyMade, RootsRead

how = os.environ.get("X509_TEST_WORKER", "")
LAST = b"the last line"


def key_made(size: int) -> bytes:
    """A KeyMade encoded in exactly `size` bytes (its key_pem padded: a str32, 5 bytes of header)."""
    empty = len(msgspec.msgpack.encode(KeyMade(key_pem="", csr_pem="")))
    data = msgspec.msgpack.encode(KeyMade(key_pem="k" * (size - empty - 4), csr_pem=""))
    assert len(data) == size, (len(data), size)
    return data


def stderr_of(size: int) -> bytes:
    """`size` bytes of noise lines, then LAST (no newline after it)."""
    noise = b"noise " * (size // 6)
    return noise[:size - len(LAST) - 1].ljust(size - len(LAST) - 1, b"n") + b"\n" + LAST


if how == "exit":
    sys.exit(3)
sys.stdin.buffer.read()
if how == "sleep":
    time.sleep(30)
elif how == "garbage":
    sys.stdout.buffer.write(b"\xc1not msgpack")
elif how == "flood":
    sys.stdout.buffer.write(b"\0" * (MAX_REPLY + 1))
elif how == "crash":
    raise RuntimeError("the worker broke")
elif how in ("reply_at", "reply_over"):
    sys.stdout.buffer.write(key_made(MAX_REPLY if how == "reply_at" else MAX_REPLY + 1))
elif how in ("stderr_line", "stderr_long"):
    size = int(os.environ.get("X509_TEST_STDERR", "0"))
    sys.stderr.buffer.write(b"E" + b"x" * (size - 1) if how == "stderr_line" else stderr_of(256 * 1024))
    sys.stderr.flush()
    sys.exit(1)
elif how == "wrong":
    sys.stdout.buffer.write(msgspec.msgpack.encode(RootsRead(roots=[])))

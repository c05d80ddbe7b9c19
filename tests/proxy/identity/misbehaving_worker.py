"""A stand-in for the X.509 worker child that misbehaves as X509_TEST_WORKER says (tests/proxy/identity/
test_x509_client.py points x509_client.MODULE here): `sleep`, `garbage`, `flood`, `crash`, `wrong`;
`exit`: gone before its request is written (as a child the OOM killer took)."""

from __future__ import annotations

import os
import sys
import time

import msgspec

from proto.identity_worker import MAX_REPLY, RootsRead

how = os.environ.get("X509_TEST_WORKER", "")
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
elif how == "wrong":
    sys.stdout.buffer.write(msgspec.msgpack.encode(RootsRead(roots=[])))

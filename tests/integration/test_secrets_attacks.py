"""Attacks on the ca's secret store over the real bus: a proxy's fetch at MAX_FETCH names and one over, a
100 kB name, a short reply key, garbage on its fetch subject; each refused cleanly (an error reply, never a
timeout), and the ca keeps serving. (Other namespaces' subjects: test_secrets.py and test_bus_lockdown.py.)"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from proto.secrets import MAX_FETCH, SecretFetchReply, SecretFetchRequest
from proto.subjects import CA_SECRET_FETCH, identity_subject
from runtime.bus import decode
from runtime.secret_seal import raw_public
from tests.integration.test_secrets import cli, files, secrets_plane  # noqa: F401 (the fixture)
from tests.integration.conftest import ControlPlane

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

pytestmark = pytest.mark.asyncio


async def test_fetch_bounds_garbage_and_foreign_events_are_refused_cleanly(secrets_plane: ControlPlane,  # noqa: F811
                                                                             tmp_path: Path) -> None:
    crt, key, _, _ = files(tmp_path, "atk")
    assert cli(secrets_plane, "create", "secret", "tls", "cred", "-n", "team-a", "--cert", crt, "--key", key).returncode == 0
    bus = await secrets_plane.bus("test-proxy-atk", role="proxy:team-a")
    subject = identity_subject(CA_SECRET_FETCH, "team-a", "default")
    reply_key = raw_public(X25519PrivateKey.generate())
    try:
        at = SecretFetchRequest(names=["cred"] + [f"n{i}" for i in range(MAX_FETCH - 1)], reply_key=reply_key)
        ok = await bus.call(subject, at, SecretFetchReply, 10.0)
        assert ok.ok and [s.name for s in ok.secrets] == ["cred"] and len(ok.missing) == MAX_FETCH - 1
        # one over MAX_FETCH, a name far over 253, garbage: each an error reply at once, not a timeout
        over = {"names": [f"n{i}" for i in range(MAX_FETCH + 1)], "reply_key": reply_key}
        long_name = {"names": ["a" * 100_000], "reply_key": reply_key}
        bad_key = {"names": ["cred"], "reply_key": b"\x00" * 31}
        for payload in (msgspec.msgpack.encode(over), msgspec.msgpack.encode(long_name),
                        msgspec.msgpack.encode(bad_key), b"\xff" * 1000, b""):
            raw = await bus.request(subject, payload, timeout=10.0)
            reply = decode(raw, SecretFetchReply)
            assert not reply.ok and reply.error and not reply.secrets
        again = await bus.call(subject, SecretFetchRequest(names=["cred"], reply_key=reply_key), SecretFetchReply, 10.0)
        assert again.ok and len(again.secrets) == 1
    finally:
        await bus.close()

"""`isthmus up --trust-domain --workload-cert-ttl --ca-kek` reaches the ca: the identities it signs are of that
trust domain, with that lifetime, its keys are under the state directory `up` was given, and with the KEK
made there its signing key is sealed into etcd."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from isthmus.launch import free_port, free_port_pair
from proto.ca import SignReply, TrustBundle
from proxy.control import buscreds
from runtime import bus as busmod
from tests.ca import pki

pytestmark = pytest.mark.asyncio


async def test_up_passes_its_identity_flags_and_state_directory_to_the_ca(tmp_path: Path) -> None:
    state = tmp_path / "state"
    nats_port, etcd_port = free_port(), free_port_pair()  # etcd's peer port is --etcd-port + 1
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "isthmus.cli", "up", "--state-dir", str(state), "--nats-port", str(nats_port),
        "--etcd-port", str(etcd_port), "--trust-domain", "example.org", "--workload-cert-ttl", "2h",
        "--ca-kek", "--dashboard-port", str(free_port()), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    url = f"nats://127.0.0.1:{nats_port}"
    try:
        seen = b""
        async with asyncio.timeout(120):
            while b"control plane ready" not in seen:
                line = await proc.stdout.readline()
                assert line, seen.decode(errors="replace")
                seen += line
        config = state / "isthmus.yaml"  # the operator's client config `up` wrote
        token = subprocess.run([sys.executable, "-m", "isthmus.cli", "--config", str(config), "token", "create",
                                "-n", "web", "--service-account", "front"], capture_output=True, text=True, timeout=60)
        assert token.returncode == 0, token.stderr
        # a sidecar's way in: join the bus with the bootstrap token, then spend it on a certificate
        auth = await buscreds.obtain(url, None, "web", "front", token.stdout.strip())
        bus = await busmod.connect(url, "test-up-ca", auth=auth)
        try:
            csr_pem, _ = pki.csr()
            reply = await bus.call("isthmus.ca.sign", {"csr_pem": csr_pem, "token": token.stdout.strip()},
                                   SignReply, timeout=10)
            bundle = await bus.call("isthmus.ca.bundle", {}, TrustBundle, timeout=10)
        finally:
            await bus.close()
        assert reply.ok and reply.spiffe_id == "spiffe://example.org/ns/web/sa/front"
        assert bundle.trust_domain == "example.org"
        leaf = x509.load_pem_x509_certificate(reply.cert_chain_pem[0].encode())
        assert 7200 <= (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() <= 7200 + 120
        keys = list((state / "ca").glob("*.key.pem"))
        assert len(keys) == 1 and stat.S_IMODE(os.stat(keys[0]).st_mode) == 0o600
        assert f"made a KEK for the ca at {state / 'ca' / 'kek'}" in seen.decode()  # --ca-kek, first start
        assert stat.S_IMODE(os.stat(state / "ca" / "kek").st_mode) == 0o600
        assert "sealed the signing key into etcd with the KEK" in (state / "logs" / "ca.log").read_text()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()

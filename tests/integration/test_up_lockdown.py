"""`isthmus up --nats-tls` end to end: it writes the operator's client config (0600, with the bus CA),
prints `export ISTHMUS_CONFIG=...`, the CLI works with that config, and the bus refuses a plaintext
client and an anonymous one; etcd refuses a client without credentials."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from isthmus.launch import free_port, free_port_pair, project_env
from runtime.clientconfig import load
from runtime.store import Store, StoreError

pytestmark = pytest.mark.asyncio


async def test_isthmus_up_with_nats_tls_writes_a_config_that_the_cli_uses(tmp_path: Path) -> None:
    nats_port, etcd_port = free_port(), free_port_pair()  # etcd's peer port is --etcd-port + 1
    env = project_env()
    env.pop("ISTHMUS_CONFIG", None)
    env.pop("ISTHMUS_NATS_URL", None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "isthmus.cli", "up", "--state-dir", str(tmp_path / "state"),
                               "--nats-port", str(nats_port), "--etcd-port", str(etcd_port), "--nats-tls",
                               "--dashboard-port", str(free_port())],
                              env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        config_path = tmp_path / "state" / "isthmus.yaml"
        assert f"export ISTHMUS_CONFIG={config_path}" in log.read_text()
        assert config_path.stat().st_mode & 0o777 == 0o600
        config = load(config_path).nats
        assert config.user == "operator" and config.tls_ca and Path(config.tls_ca).is_file()
        assert config.url == f"nats://127.0.0.1:{nats_port}"

        result = subprocess.run([sys.executable, "-m", "isthmus.cli", "get", "vs", "-A"],
                                env={**env, "ISTHMUS_CONFIG": str(config_path)}, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result

        with pytest.raises(Exception):  # the right password, but in plaintext
            await nats.connect(config.url, user="operator", password=config.password, allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=2)
        tls = ssl.create_default_context(cafile=config.tls_ca)
        with pytest.raises(Exception, match="Authorization Violation"):  # TLS, but anonymous
            await nats.connect(config.url, tls=tls, allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)
        with pytest.raises(StoreError, match="wants a user and password"):  # no etcd credentials: refused at connect
            await Store.connect("127.0.0.1", etcd_port, wait=5)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()

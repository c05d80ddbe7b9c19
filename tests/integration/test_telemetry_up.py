"""`isthmus up --dashboard-port` starts the telemetry service there, prints the URL, saves it in the operator's
client config, and `isthmus dashboard` prints it back; `up --demo` prints it too."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from isthmus.launch import free_port, free_port_pair
from isthmus.up import _print_ready



async def test_up_serves_the_dashboard_port_it_prints_and_dashboard_reads_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    nats_port, etcd_port, dashboard_port = free_port(), free_port_pair(), free_port()  # etcd's peer: + 1
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "isthmus.cli", "up", "--state-dir", str(state), "--nats-port", str(nats_port),
        "--etcd-port", str(etcd_port), "--dashboard-port", str(dashboard_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{dashboard_port}/"
    try:
        seen = b""
        async with asyncio.timeout(120):
            while b"Ctrl-C stops everything" not in seen:
                line = await proc.stdout.readline()
                assert line, seen.decode(errors="replace")
                seen += line
        assert f"dashboard: {url}" in seen.decode()
        with urllib.request.urlopen(f"{url}healthz", timeout=5) as response:
            assert response.status == 200
        shown = subprocess.run([sys.executable, "-m", "isthmus.cli", "--config", str(state / "isthmus.yaml"),
                                "dashboard", "--no-browser"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and shown.stdout == f"{url}\n", shown.stderr
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def test_up_demo_prints_the_dashboard_url_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _print_ready(tmp_path, "nats://127.0.0.1:4222", "http://127.0.0.1:2379", True, tmp_path / "isthmus.yaml",
                 "http://127.0.0.1:20001/")
    out = capsys.readouterr().out
    assert "dashboard: http://127.0.0.1:20001/" in out and "bookinfo demo" in out

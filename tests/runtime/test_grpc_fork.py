"""runtime/grpc_fork.py: a process of ours that loads the etcd client runs none of gRPC's fork handlers, so a
fork (subprocess.Popen with a preexec_fn, as ManagedProcess does) cannot hang in them. gRPC's own "fork" trace
says when its prefork handler runs; the control run, without our module, shows that it would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from isthmus.launch import free_port

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import asyncio, subprocess, sys
if sys.argv[1] == "ours":
    import runtime.store  # noqa: F401
import aetcd

async def main() -> None:
    client = aetcd.Client("127.0.0.1", int(sys.argv[2]), timeout=1)  # gRPC initialised; nothing need answer
    await client.connect()
    for _ in range(3):
        subprocess.Popen(["true"], preexec_fn=lambda: None).wait()
    await client.close()

asyncio.run(main())
"""


def forks_traced(which: str, **env: str) -> str:
    """gRPC's log of a child that forks three times with gRPC initialised: `ours` imports runtime.store first.
    The variable is taken out of the child's environment (this process has it from runtime.store) unless given."""
    base = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    done = subprocess.run([sys.executable, "-c", CHILD, which, str(free_port())], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**base, "PYTHONPATH": str(ROOT), "GRPC_VERBOSITY": "debug",
                                                      "GRPC_TRACE": "fork", **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_our_processes_run_no_grpc_fork_handler() -> None:
    assert "fork_posix" in forks_traced("control")  # what grpcio does by default
    assert "fork_posix" not in forks_traced("ours")


def test_an_operators_own_setting_is_kept() -> None:
    assert "fork_posix" in forks_traced("ours", GRPC_ENABLE_FORK_SUPPORT="true")

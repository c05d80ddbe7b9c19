"""Optional sampling profile of pilot with py-spy (`pip install py-spy` into the venv; it is not a
project dependency), summarised by what pilot was doing. Absent py-spy, or without ptrace rights,
profile() returns None and the benchmark goes on without it."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# (activity, markers): the first activity one of whose markers a stack contains wins.
ACTIVITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("snapshot (encode full config)", ("_snapshot (services/pilot/service.py", "snapshot (services/pilot/pusher.py")),
    ("compile + diff", ("recompile (", "compile_mesh (", "mesh_state (", "MeshState")),
    ("ACK handling", ("on_ack (",)),
    ("status flush to etcd", ("flush (services/pilot/proxy_status.py",)),
    ("config API (validate + etcd txn)", ("config_api.py",)),
    ("push publish", ("_compile_loop (",)),
    ("etcd watch (inputs)", ("inputs.py",)),
    ("leader election", ("leader.py",)),
    ("nats-py I/O", ("nats/aio/",)),
    ("grpc/aetcd I/O", ("grpc", "aetcd")),
    ("event loop", ("asyncio", "uvloop")),
)


def available() -> str | None:
    found = Path(sys.prefix) / "bin" / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


class PySpy:
    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""

    def start(self) -> PySpy:
        exe = available()
        if exe is None:
            self.error = "py-spy not installed"
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = subprocess.Popen(
                [exe, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw", "--nonblocking",
                 "--output", str(self.out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            self.error = str(exc)
        return self

    def stop(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            self.error = (err or b"").decode(errors="replace").strip()[-300:] or "no output"
            return None
        return summarise(self.out.read_text(errors="replace"), self.rate)


def summarise(raw: str, rate: int) -> dict[str, Any]:
    by_activity: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for activity, markers in ACTIVITIES:
            if any(m in stack for m in markers):
                by_activity[activity] += n
                break
        else:
            by_activity["other"] += n
        by_leaf[stack.rsplit(";", 1)[-1]] += n
    return {
        "samples": total,
        "busy_s": round(total / rate, 2),
        "activities": {k: round(100 * v / total, 1) for k, v in by_activity.most_common()} if total else {},
        "top_leaf_functions": [(k, round(100 * v / total, 1)) for k, v in by_leaf.most_common(8)] if total else [],
    }

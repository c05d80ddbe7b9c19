"""ManagedProcess: one child process with a log file, start/stop/kill, and a readiness probe.

Every child is started in its own session (Ctrl-C in the terminal reaches only the parent, which then
stops the children in order) and with a Linux parent-death signal: if the parent dies, even by
SIGKILL, the kernel sends SIGTERM to the child. The signal fires when the *thread* that forked the
child exits, so start processes from the main thread (or another thread that lives as long as they do),
never from a short-lived worker such as `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from isthmus.launch.errors import LaunchError

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # not Linux: nothing more we can do here
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class ManagedProcess:
    """One child process: argv, env, a log file, start/stop, and an optional readiness probe.

    `probe` is a quick blocking check (True once the process serves); `url` is what clients use.
    start() may be called again after the process exited (that is how the Supervisor restarts it).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        url: str | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.cwd = cwd
        self.url = url
        self.probe = probe
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} running={self.is_running}>"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def start(self) -> "ManagedProcess":
        if self.is_running:
            return self
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- {stamp} start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
        else:
            log = subprocess.DEVNULL  # type: ignore[assignment]
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child holds its own descriptor
        self.started_at = time.monotonic()
        self.starts += 1
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code (None if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            except ProcessLookupError:
                pass
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: for a process that no longer runs its code (paused, hung), which SIGTERM cannot stop."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.popen.kill()
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the current run wrote to the log (earlier runs append to the same file)."""
        if not self.log_path or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
        all_lines = text.splitlines()
        marker = f" start {self.name}: "
        starts = [i for i, line in enumerate(all_lines) if line.startswith("--- ") and marker in line]
        if starts:
            all_lines = all_lines[starts[-1] + 1:]
        return "\n".join(all_lines[-lines:])

    def _not_ready(self, why: str) -> LaunchError:
        tail = self.log_tail()
        where = f" (log: {self.log_path})" if self.log_path else ""
        return LaunchError(f"{self.name} {why}{where}" + (f"\n{tail}" if tail else ""))

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Block until the probe passes; LaunchError (with the log tail) on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running:
                raise self._not_ready(f"exited with code {self.returncode} before it was ready")
            if self.probe is None or self.probe():
                return
            if time.monotonic() > deadline:
                raise self._not_ready(f"not ready after {timeout:g}s")
            time.sleep(0.05)

    async def wait_ready_async(self, timeout: float = 15.0) -> None:
        """wait_ready for an event loop: the probe runs in a thread, the loop stays free."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self.is_running:
                raise self._not_ready(f"exited with code {self.returncode} before it was ready")
            if self.probe is None or await asyncio.to_thread(self.probe):
                return
            if loop.time() > deadline:
                raise self._not_ready(f"not ready after {timeout:g}s")
            await asyncio.sleep(0.05)


"""Supervisor: keeps processes running (restart with backoff on exit, kill and restart after missed
health checks) and stops them all in reverse order."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from isthmus.launch.errors import LaunchError
from isthmus.launch.process import ManagedProcess
from proto.health import HealthReply
from proto.subjects import health_subject
from runtime.bus import Bus, decode

HealthProbe = Callable[[], Awaitable[bool]]


def bus_health_probe(bus: Bus, service: str, timeout: float = 1.0) -> HealthProbe:
    """True when an instance of `service` answers `isthmus.health.<service>` with ready=True in time."""

    async def probe() -> bool:
        try:
            return decode(await bus.request(health_subject(service), b"{}", timeout=timeout), HealthReply).ready
        except Exception:
            return False

    return probe


class Supervisor:
    """Keeps a list of processes running: restarts crashed ones with backoff, stops all in reverse.

    The backoff doubles from `backoff_initial` up to `backoff_max` while runs keep failing, and goes back
    to `backoff_initial` once a run has stayed up `stable_after` seconds (and, for a process watched with
    watch_health(), answered its health check in that run): a service that crashed a few times at
    startup and then served for an hour restarts at once when it next exits, not after `backoff_max`
    (Kubernetes resets CrashLoopBackOff after 10 minutes of running; ours is shorter as the services
    start in seconds). A run that never answered health is not a healthy run, however long it lasted.

    A process watched with watch_health() is also restarted when it stops answering: after
    `health_misses` failed probes in a row, `health_interval` seconds apart, it is killed (SIGKILL:
    a paused or hung process never runs a SIGTERM handler) and then restarted like a crashed one
    (Kubernetes' liveness probe: periodSeconds, failureThreshold). Misses count only once the
    process has answered once since it (re)started, or after `health_grace` seconds of startup.

    check() does one pass and is what run() repeats; both fork from the calling thread, so call them
    from the main thread (see the module docstring).
    """

    def __init__(
        self,
        *,
        report: Callable[[str], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        stable_after: float = 30.0,
        health_interval: float = 2.0,
        health_misses: int = 3,
        health_grace: float = 45.0,
    ) -> None:
        self.health_interval = health_interval
        self.health_misses = health_misses
        self.health_grace = health_grace
        self._probes: dict[int, HealthProbe] = {}
        self._missed: dict[int, int] = {}
        self._answered: dict[int, tuple[int | None, bool]] = {}  # pid -> answered since that start
        self.processes: list[ManagedProcess] = []
        self._restart: dict[int, bool] = {}
        self._failures: dict[int, int] = {}
        self._due: dict[int, float] = {}
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stopping = False

    def add(self, proc: ManagedProcess, *, restart: bool = True, start: bool = True) -> ManagedProcess:
        """Track proc (starting it unless start=False or it runs already)."""
        self.processes.append(proc)
        self._restart[id(proc)] = restart
        self._failures[id(proc)] = 0
        if start and not proc.is_running:
            proc.start()
        return proc

    def healthy_run(self, proc: ManagedProcess, now: float) -> bool:
        """Whether proc's current (or last) run stayed up `stable_after` seconds and, if its health is
        watched, answered a health check: a run after which the backoff starts over."""
        if now - proc.started_at < self.stable_after:
            return False
        return id(proc) not in self._probes or self._answered.get(id(proc), (None, False)) == (proc.pid, True)

    def failures(self, proc: ManagedProcess) -> int:
        """Failed runs in a row (the next restart waits backoff_initial * 2**failures, at most backoff_max)."""
        return self._failures.get(id(proc), 0)

    def check(self) -> None:
        now = time.monotonic()
        for proc in list(self.processes):
            key = id(proc)
            if proc.popen is not None and proc.is_running and self._failures.get(key) and self.healthy_run(proc, now):
                self._failures[key] = 0  # it has served long enough: the backoff starts over
            if self.stopping or not self._restart.get(key) or proc.popen is None or proc.is_running:
                continue
            due = self._due.get(key)
            if due is None:
                failures = 0 if self.healthy_run(proc, now) else self._failures[key]
                delay = min(self.backoff_max, self.backoff_initial * 2**failures)
                self._failures[key] = failures + 1
                self._due[key] = now + delay
                where = f"; log: {proc.log_path}" if proc.log_path else ""
                self.report(f"{proc.name} exited with code {proc.returncode}; restarting in {delay:g}s{where}")
            elif now >= due:
                del self._due[key]
                try:
                    proc.start()
                    self.report(f"{proc.name} restarted (pid {proc.pid})")
                except LaunchError as exc:
                    self.report(str(exc))
                    proc.started_at = now  # count it as a failed run: the next delay grows

    def stop(self, proc: ManagedProcess, timeout: float = 5.0) -> int | None:
        """Stop one process for good (no restart) and forget it."""
        self._restart[id(proc)] = False
        self._due.pop(id(proc), None)
        code = proc.stop(timeout)
        if proc in self.processes:
            self.processes.remove(proc)
        return code

    def watch_health(self, proc: ManagedProcess, probe: HealthProbe) -> None:
        """Probe proc every health_interval seconds; see the class docstring."""
        self._probes[id(proc)] = probe
        self._missed[id(proc)] = 0

    async def check_health(self) -> None:
        """One round of probes (concurrently); kills a process that missed health_misses in a row."""
        watched = [p for p in self.processes if id(p) in self._probes and p.is_running]
        if self.stopping or not watched:
            return
        results = await asyncio.gather(*(self._probes[id(p)]() for p in watched), return_exceptions=True)
        now = time.monotonic()
        for proc, ok in zip(watched, results):
            key = id(proc)
            pid, answered = self._answered.get(key, (None, False))
            if pid != proc.pid:
                answered = False  # a new run: it must answer once before misses count (or outlive the grace)
            if ok is True:
                self._missed[key] = 0
                self._answered[key] = (proc.pid, True)
                continue
            self._answered[key] = (proc.pid, answered)
            if not answered and now - proc.started_at < self.health_grace:
                continue
            self._missed[key] += 1
            if self._missed[key] >= self.health_misses and not self.stopping:
                self.report(f"{proc.name} (pid {proc.pid}) did not answer {self._missed[key]} health checks in a "
                            f"row, {self.health_interval:g}s apart; killing it to restart it")
                self._missed[key] = 0
                proc.kill()

    async def run(self, interval: float = 0.5) -> None:
        next_probe = time.monotonic() + self.health_interval
        while not self.stopping:
            self.check()
            if time.monotonic() >= next_probe:
                await self.check_health()
                next_probe = time.monotonic() + self.health_interval
            await asyncio.sleep(interval)

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every process, last started first. No restarts happen afterwards."""
        self.stopping = True
        for proc in reversed(self.processes):
            proc.stop(timeout)

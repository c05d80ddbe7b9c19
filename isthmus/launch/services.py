"""The control-plane services (`python -m services.<name>`): their argv and environment, and waiting for
one to answer ready on `isthmus.health.<name>`."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from isthmus.launch.credentials import MeshCredentials
from isthmus.launch.errors import LaunchError
from isthmus.launch.process import ManagedProcess
from proto.health import HealthReply
from proto.subjects import health_subject
from runtime.bus import Bus, BusError, decode
from runtime.clientconfig import ENV as CONFIG_ENV

SERVICES = ("auth", "registry", "pilot", "ca", "telemetry")  # start order of `isthmus up`


def project_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ plus PYTHONPATH naming this checkout, so `python -m services.x` works from any cwd."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # isthmus/launch/services.py -> the checkout
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def service_argv(name: str, nats_url: str, etcd_url: str, extra: Iterable[str] = ()) -> list[str]:
    """argv of one control-plane service: `python -P -m services.<name> --nats URL --etcd URL ...`. `-P`: the
    working directory is not put first on sys.path, so a `services/` (or `proxy/`, `runtime/`) folder where
    `isthmus up` runs cannot stand in for ours."""
    return [sys.executable, "-P", "-m", f"services.{name}", "--nats", nats_url, "--etcd", etcd_url, *extra]


def service_process(
    name: str, nats_url: str, etcd_url: str, state_dir: str | Path, extra: Iterable[str] = (),
    credentials: MeshCredentials | None = None,
) -> ManagedProcess:
    """A (not yet started) ManagedProcess for one service, logging to state_dir/logs/<name>.log.

    `credentials`: the service gets its own client config (secrets/<name>.yaml, 0600) through the
    environment (ISTHMUS_CONFIG names the file: secrets never travel in argv)."""
    env: dict[str, str] = {}
    if credentials is not None:
        env[CONFIG_ENV] = str(credentials.secrets_dir / f"{name}.yaml")
        if name == "auth":
            env["ISTHMUS_AUTH_SEED_FILE"] = str(credentials.seed_file)
            env["ISTHMUS_AUTH_SYSTEM_CONFIG"] = str(credentials.system_config)
    return ManagedProcess(
        name,
        service_argv(name, nats_url, etcd_url, extra),
        log_path=Path(state_dir) / "logs" / f"{name}.log",
        env=project_env({**env, "ISTHMUS_STATE_DIR": str(Path(state_dir).resolve())}),  # the ca keeps its keys there
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

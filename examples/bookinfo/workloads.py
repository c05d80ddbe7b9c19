"""The demo's workloads: an app and its sidecar per (service, version), each a supervised process with its
own log, and waits on the sidecars' admin port (ready; holding a given config revision)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from examples.bookinfo.app import HttpClient
from examples.bookinfo.traffic import VERSIONS
from isthmus.launch import ManagedProcess, Supervisor, free_port, project_env

SERVICE_PORT = 9080
READY_TIMEOUT = 60.0


@dataclass
class Workload:
    service: str
    version: str
    app: ManagedProcess
    sidecar: ManagedProcess
    app_port: int
    inbound_port: int
    outbound_port: int
    admin_port: int


def app_argv(role: str, version: str, port: int, proxy_port: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "examples.bookinfo.app", "--role", role, "--version", version, "--port", str(port)]
    if proxy_port is not None:
        argv += ["--reviews-url", f"http://reviews:{SERVICE_PORT}/reviews", "--proxy", f"http://127.0.0.1:{proxy_port}"]
    return argv


def sidecar_argv(nats_url: str, service: str, version: str, app_port: int, inbound: int, outbound: int,
                 admin: int) -> list[str]:
    return [sys.executable, "-m", "isthmus.cli", "--nats", nats_url, "proxy", "run",
            "--service", service, "--namespace", "default", "--service-account", f"bookinfo-{service}",
            "--service-port", str(SERVICE_PORT),
            "--app-port", str(app_port), "--labels", f"app={service},version={version}",
            "--inbound-port", str(inbound), "--outbound-port", str(outbound), "--admin-port", str(admin),
            "--access-log", "-"]  # into the sidecar's log file: flags such as UO or FI show there


def start_workloads(nats_url: str, supervisor: Supervisor, log_dir: Path,
                    plans: list[tuple[str, str]] | None = None, prefix: str = "") -> list[Workload]:
    """The apps, then their sidecars (so stopping in reverse takes the sidecars down first). `plans`:
    (service, version) pairs, default the frontend and reviews v1-v3; `prefix` goes into every process
    and log name (demo-<prefix><service>-<version>.log, demo-<prefix>sidecar-<service>-<version>.log)."""
    env = project_env()
    plans = plans or [("frontend", "v1"), *(("reviews", v) for v in VERSIONS)]
    ports = {plan: (free_port(), free_port(), free_port(), free_port()) for plan in plans}
    apps: dict[tuple[str, str], ManagedProcess] = {}
    for service, version in plans:
        app_port, _, outbound, _ = ports[(service, version)]
        argv = app_argv("frontend" if service == "frontend" else "reviews", version, app_port,
                        outbound if service == "frontend" else None)
        apps[(service, version)] = supervisor.add(ManagedProcess(
            f"{prefix}{service}-{version}", argv, log_path=log_dir / f"demo-{prefix}{service}-{version}.log", env=env))
    workloads = []
    for service, version in plans:
        app_port, inbound, outbound, admin = ports[(service, version)]
        sidecar = supervisor.add(ManagedProcess(
            f"{prefix}sidecar-{service}-{version}",
            sidecar_argv(nats_url, service, version, app_port, inbound, outbound, admin),
            log_path=log_dir / f"demo-{prefix}sidecar-{service}-{version}.log", env=env))
        workloads.append(Workload(service, version, apps[(service, version)], sidecar, app_port, inbound,
                                  outbound, admin))
    return workloads


async def wait_sidecars_ready(workloads: list[Workload], timeout: float = READY_TIMEOUT) -> None:
    """Poll every sidecar's admin /ready until it answers 200 (it has config from pilot)."""
    async def ready(client: HttpClient, w: Workload) -> bool:
        return (await client.get(f"http://127.0.0.1:{w.admin_port}/ready")).status == 200

    await _poll_each(workloads, ready, f"not ready after {timeout:g}s", timeout, fail_on_exit=True)


async def wait_converged(workloads: list[Workload], revision: int, timeout: float = READY_TIMEOUT) -> None:
    """Poll every sidecar's /config_dump until it holds config at least as new as the etcd `revision`."""
    async def holds(client: HttpClient, w: Workload) -> bool:
        return (await client.get(f"http://127.0.0.1:{w.admin_port}/config_dump")).json()["version"] >= revision

    await _poll_each(workloads, holds, f"no config of revision {revision} after {timeout:g}s", timeout)


async def _poll_each(workloads: list[Workload], done: Callable[[HttpClient, Workload], Awaitable[bool]],
                     failure: str, timeout: float, fail_on_exit: bool = False) -> None:
    """Call `done` every 0.1 s for each workload in turn until it is true (an unanswered or malformed admin
    reply counts as not yet); the sidecar's not-ready error with `failure` once `timeout` seconds have
    passed, or at once when `fail_on_exit` and its app or sidecar has exited."""
    client = HttpClient(timeout=1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        for w in workloads:
            while True:
                for proc in (w.app, w.sidecar) if fail_on_exit else ():
                    if not proc.is_running:
                        raise proc._not_ready(f"exited with code {proc.returncode}")
                try:
                    if await done(client, w):
                        break
                except (OSError, asyncio.TimeoutError, ValueError, KeyError):
                    pass
                if loop.time() > deadline:
                    raise w.sidecar._not_ready(failure)
                await asyncio.sleep(0.1)
    finally:
        await client.close()

"""The demo's ingress gateway: `isthmus gateway run --name istio-ingressgateway` (namespace istio-system, labels
istio=ingressgateway), a supervised process beside the demo's apps and sidecars, serving Gateway port 80 on
127.0.0.1:<port> (default 8080, Istio's ingress gateway's container port for 80). What it serves comes from
bookinfo-gateway.yaml, which the demo applies with its other config (docs/gateways.md)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from examples.bookinfo.app import HttpClient
from isthmus.launch import LaunchError, ManagedProcess, Supervisor, free_port, port_in_use, project_env

NAME = "istio-ingressgateway"
NAMESPACE = "istio-system"
DEFAULT_PORT = 8080  # Gateway port 80 listens here (Istio's ingress gateway: targetPort 8080 for port 80)
GATEWAY_PORT = 80
READY_TIMEOUT = 60.0


@dataclass
class Ingress:
    process: ManagedProcess
    port: int  # where Gateway port 80 listens, on 127.0.0.1
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def check_port(port: int, flag: str = "--ingress-port") -> str | None:
    """The problem with serving the gateway on `port`, as one line naming `flag`; None when it is free."""
    if port_in_use(port):
        return f"{flag} {port}: address already in use (the demo's ingress gateway listens there; pick another)"
    return None


def gateway_argv(nats_url: str, port: int, admin_port: int) -> list[str]:
    return [sys.executable, "-m", "isthmus.cli", "--nats", nats_url, "gateway", "run", "--name", NAME,
            "--namespace", NAMESPACE, "--port", f"{port}:{GATEWAY_PORT}", "--admin-port", str(admin_port),
            "--listen-host", "127.0.0.1",  # loopback only: the demo's "outside the mesh" is this host
            "--access-log", "-"]  # into its log file, as the sidecars'


def start_ingress(nats_url: str, supervisor: Supervisor, log_dir: Path, port: int = DEFAULT_PORT) -> Ingress:
    """Start the gateway under `supervisor` (log <log_dir>/demo-istio-ingressgateway.log). LaunchError naming
    --ingress-port when `port` is taken."""
    problem = check_port(port)
    if problem:
        raise LaunchError(problem)
    admin = free_port()
    process = supervisor.add(ManagedProcess(NAME, gateway_argv(nats_url, port, admin),
                                            log_path=log_dir / f"demo-{NAME}.log", env=project_env()))
    return Ingress(process, port, admin)


async def wait_ingress(ingress: Ingress, revision: int = 0, timeout: float = READY_TIMEOUT) -> None:
    """Poll the gateway's admin port until it is ready (config from pilot, its workload certificate) and holds
    config at least as new as the etcd `revision`; LaunchError with its log tail on exit or timeout."""
    client = HttpClient(timeout=1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    base = f"http://127.0.0.1:{ingress.admin_port}"
    try:
        while True:
            if not ingress.process.is_running:
                raise ingress.process._not_ready(f"exited with code {ingress.process.returncode}")
            try:
                if ((await client.get(f"{base}/ready")).status == 200
                        and (await client.get(f"{base}/config_dump")).json()["version"] >= revision):
                    return
            except (OSError, asyncio.TimeoutError, ValueError, KeyError):
                pass
            if loop.time() > deadline:
                raise ingress.process._not_ready(f"not ready (or no config of revision {revision}) after {timeout:g}s")
            await asyncio.sleep(0.1)
    finally:
        await client.close()

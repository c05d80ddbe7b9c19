"""The demo's ingress gateway: `isthmus gateway run --name istio-ingressgateway` (namespace istio-system, labels
istio=ingressgateway), a supervised process beside the demo's apps and sidecars, serving Gateway port 80 on
127.0.0.1:<port> (default 8080) and 443 on 127.0.0.1:<https port> (default 8443), Istio's ingress gateway's
container ports for them. What it serves comes from bookinfo-gateway.yaml, which the demo applies with its
other config, and the certificate of ingress_tls.py (docs/gateways.md)."""

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
DEFAULT_HTTPS_PORT = 8443  # ... and 443 here
READY_TIMEOUT = 60.0


@dataclass
class Ingress:
    process: ManagedProcess
    port: int  # where Gateway port 80 listens, on 127.0.0.1
    https_port: int  # where Gateway port 443 listens
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def check_ports(port: int, https_port: int) -> str | None:
    """The problem with serving the gateway on `port` and `https_port`, as one line naming the flag to change;
    None when both are free."""
    if port == https_port:
        return f"--ingress-https-port {https_port}: the same as --ingress-port"
    for flag, value in (("--ingress-port", port), ("--ingress-https-port", https_port)):
        if port_in_use(value):
            return f"{flag} {value}: address already in use (the demo's ingress gateway listens there; pick another)"
    return None


def gateway_argv(nats_url: str, port: int, https_port: int, admin_port: int) -> list[str]:
    return [sys.executable, "-m", "isthmus.cli", "--nats", nats_url, "gateway", "run", "--name", NAME,
            "--namespace", NAMESPACE, "--port", f"{port}:80", "--port", f"{https_port}:443",
            "--admin-port", str(admin_port),
            "--listen-host", "127.0.0.1",  # loopback only: the demo's "outside the mesh" is this host
            "--access-log", "-"]  # into its log file, as the sidecars'


def start_ingress(nats_url: str, supervisor: Supervisor, log_dir: Path, port: int = DEFAULT_PORT,
                  https_port: int = DEFAULT_HTTPS_PORT) -> Ingress:
    """Start the gateway under `supervisor` (log <log_dir>/demo-istio-ingressgateway.log). LaunchError naming
    --ingress-port or --ingress-https-port when a port is taken."""
    problem = check_ports(port, https_port)
    if problem:
        raise LaunchError(problem)
    admin = free_port()
    process = supervisor.add(ManagedProcess(NAME, gateway_argv(nats_url, port, https_port, admin),
                                            log_path=log_dir / f"demo-{NAME}.log", env=project_env()))
    return Ingress(process, port, https_port, admin)


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

"""Fixtures that start the real thing: nats-server and etcd from the wheels on free loopback
ports, the control-plane services as processes, and sidecars through `isthmus proxy run`."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.launch import ManagedProcess, free_port, project_env, service_process, start_etcd, start_nats, wait_ready
from runtime import bus as busmod

LEASE_TTL = 2  # seconds: short, so tests of endpoint expiry are quick


class ControlPlane:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.nats = start_nats(state_dir)
        self.etcd = start_etcd(state_dir, unsafe_no_fsync=True)
        self.nats_url = self.nats.url or ""
        self.etcd_url = self.etcd.url or ""
        self.services: dict[str, ManagedProcess] = {}
        self.proxies: list[ManagedProcess] = []

    def start_service(self, name: str) -> ManagedProcess:
        """For sync code (fixtures); async tests use `await plane.start_service_async(name)`."""
        proc = self._spawn(name)
        asyncio.run(self._wait(name, proc))
        return proc

    async def start_service_async(self, name: str) -> ManagedProcess:
        proc = self._spawn(name)
        await self._wait(name, proc)
        return proc

    def _spawn(self, name: str) -> ManagedProcess:
        proc = service_process(name, self.nats_url, self.etcd_url, self.state_dir,
                               ["--lease-ttl", str(LEASE_TTL)])
        self.services[name] = proc.start()
        return proc

    async def _wait(self, name: str, proc: ManagedProcess) -> None:
        bus = await busmod.connect(self.nats_url, "test-wait")
        try:
            await wait_ready(bus, name, 30, process=proc)
        finally:
            await bus.close()

    async def restart_service(self, name: str) -> ManagedProcess:
        self.services[name].stop()
        return await self.start_service_async(name)

    def proxy(self, service: str, app_port: int, service_port: int = 9080, namespace: str = "default",
              labels: str = "", extra: tuple[str, ...] = ()) -> "Sidecar":
        """`extra`: more `proxy run` arguments (--tcp, --app-tcp, ...)."""
        sidecar = Sidecar(self, service, app_port, service_port, namespace, labels, extra)
        self.proxies.append(sidecar.process)
        return sidecar

    def stop(self) -> None:
        for proc in [*self.proxies, *reversed(list(self.services.values())), self.etcd, self.nats]:
            proc.stop(5)


class Sidecar:
    """A real sidecar process started with the CLI, as a user would."""

    def __init__(self, plane: ControlPlane, service: str, app_port: int, service_port: int,
                 namespace: str, labels: str, extra: tuple[str, ...] = ()) -> None:
        self.outbound_port, self.inbound_port, self.admin_port = free_port(), free_port(), free_port()
        name = f"proxy-{service}-{self.inbound_port}"
        argv = [sys.executable, "-m", "isthmus.cli", "--nats", plane.nats_url, "proxy", "run",
                "--service", service, "--namespace", namespace, "--service-port", str(service_port),
                "--app-port", str(app_port), "--inbound-port", str(self.inbound_port),
                "--outbound-port", str(self.outbound_port), "--admin-port", str(self.admin_port),
                "--lease-ttl", str(LEASE_TTL)]
        if labels:
            argv += ["--labels", labels]
        argv += extra
        self.process = ManagedProcess(name, argv, log_path=plane.state_dir / "logs" / f"{name}.log",
                                      env=project_env())
        self.process.start()

    def admin(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def config_dump(self) -> dict:
        return json.loads(self.admin("/config_dump")[1])

    async def ready(self, timeout: float = 20.0) -> "Sidecar":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_running:
                raise AssertionError(f"sidecar exited:\n{self.process.log_tail()}")
            try:
                status, _ = await asyncio.to_thread(self.admin, "/ready")
                if status == 200:
                    return self
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"sidecar not ready in {timeout}s:\n{self.process.log_tail()}")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("isthmus"))
    try:
        for name in ("registry", "pilot"):
            cp.start_service(name)
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def mesh(plane: ControlPlane) -> Iterator[ControlPlane]:
    """The module's control plane; sidecars a test starts are stopped when it ends."""
    before = len(plane.proxies)
    yield plane
    for proc in plane.proxies[before:]:
        proc.stop(5)
    del plane.proxies[before:]


async def apply(plane: ControlPlane, text: str) -> dict:
    """Apply YAML through the config API, as `isthmus apply` and scripts do."""
    bus = await busmod.connect(plane.nats_url, "test-apply")
    try:
        return json.loads(await bus.request("isthmus.config.apply", text.encode(), timeout=10))
    finally:
        await bus.close()


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async or sync check until it returns a truthy value; that value is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")

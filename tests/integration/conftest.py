"""Fixtures that start the real thing: nats-server and etcd from the wheels on free loopback
ports, the control-plane services as processes, and sidecars through `isthmus proxy run`."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from isthmus.launch import ManagedProcess, free_port, project_env, service_process, wait_ready
from isthmus.launch.credentials import ETCD_SERVICE_USER
from isthmus.launch.secure import start_secure
from proto.busauth import BusCredsReply, BusCredsRequest, proxy_permissions
from proto.subjects import BUS_CREDS_ISSUE
from runtime import bus as busmod
from runtime.clientconfig import ENV as CONFIG_ENV
from runtime.clientconfig import NatsClient
from runtime.store import Store
from tests.integration.httpclient import Backend, Client

LEASE_TTL = 2  # seconds: short, so tests of endpoint expiry are quick
_namespaces = itertools.count(1)


def fqdn(service: str, ns: str) -> str:
    """The cluster host a sidecar holds for a Kubernetes-style service name."""
    return f"{service}.{ns}.svc.cluster.local"


def role_for(subject: str) -> str:
    """The role whose credentials may send on `subject` (proto/busauth.py): "proxy" (namespace and service
    account default) or "operator"."""
    return "proxy" if subject in proxy_permissions("x", "default", "default").publish else "operator"


class ControlPlane:
    """nats-server and etcd locked down as `isthmus up` runs them (isthmus/launch/credentials.py): the
    roles' users and the auth callout on the bus, authentication on etcd; the services get their own
    client configs, tests and the CLI use the operator's (`config_path`, also ISTHMUS_CONFIG while the
    plane runs), sidecars mint their own proxy credentials with it, as `proxy run` does."""

    def __init__(self, state_dir: Path, tls: bool = False) -> None:
        self.state_dir = state_dir
        secure = start_secure(state_dir, tls=tls, unsafe_no_fsync=True)
        self.nats, self.etcd, self.creds, self.config_path = secure.nats, secure.etcd, secure.creds, secure.operator_config
        self.nats_url = self.nats.url or ""
        self.etcd_url = self.etcd.url or ""
        self.operator = self.creds.client_config("operator", self.nats_url).nats
        self._saved_env = os.environ.get(CONFIG_ENV)
        os.environ[CONFIG_ENV] = str(self.config_path)  # CLI subprocesses the tests run read it
        self._proxy_auth: dict[tuple[str, str], NatsClient] = {}
        self.services: dict[str, ManagedProcess] = {}
        self.proxies: list[ManagedProcess] = []

    async def issue_credentials(self, namespace: str = "default", service_account: str = "default") -> BusCredsReply:
        """A new proxy bus credential for one identity, as the operator issues it (isthmus.bus.creds.issue)."""
        bus = await busmod.connect(self.nats_url, "test-issue", auth=self.operator)
        try:
            reply = await bus.call(BUS_CREDS_ISSUE, BusCredsRequest(namespace=namespace,
                                                                    service_account=service_account), BusCredsReply)
        finally:
            await bus.close()
        assert reply.ok, reply
        return reply

    async def proxy_auth(self, namespace: str = "default", service_account: str = "default") -> NatsClient:
        """Proxy credentials for one identity, issued once per plane."""
        identity = (namespace, service_account)
        if identity not in self._proxy_auth:
            reply = await self.issue_credentials(namespace, service_account)
            self._proxy_auth[identity] = NatsClient(url=self.nats_url, user=reply.user, password=reply.password,
                                                    inbox_prefix=reply.inbox_prefix, tls_ca=self.operator.tls_ca)
        return self._proxy_auth[identity]

    async def auth(self, role: str) -> NatsClient:
        """The credentials of `role`: "proxy" (namespace default), "proxy:<namespace>" (service account
        default), or a static role ("operator", "pilot", "registry", ...)."""
        if role == "proxy" or role.startswith("proxy:"):
            return await self.proxy_auth(role.partition(":")[2] or "default")
        return self.creds.client_config(role, self.nats_url).nats

    async def nats_client(self, role: str = "operator", **options: Any) -> Any:
        """A raw nats-py client as `role`, as a script would connect."""
        return await nats.connect(self.nats_url, **busmod.connect_options(await self.auth(role)), **options)

    async def bus(self, name: str, role: str = "operator") -> busmod.Bus:
        return await busmod.connect(self.nats_url, name, auth=await self.auth(role))

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
                               ["--lease-ttl", str(LEASE_TTL)], credentials=self.creds)
        self.services[name] = proc.start()
        return proc

    async def _wait(self, name: str, proc: ManagedProcess) -> None:
        bus = await busmod.connect(self.nats_url, "test-wait", auth=self.operator)
        try:
            await wait_ready(bus, name, 30, process=proc)
        finally:
            await bus.close()

    async def store(self) -> Store:
        """A client of the plane's etcd (as the services' user); the caller closes it."""
        host, port = self.etcd_url.removeprefix("http://").split(":")
        return await Store.connect(host, int(port), user=ETCD_SERVICE_USER, password=self.creds.etcd_service)

    async def restart_service(self, name: str) -> ManagedProcess:
        self.services[name].stop()
        return await self.start_service_async(name)

    def proxy(self, service: str, app_port: int, service_port: int = 9080, namespace: str = "default",
              labels: str = "", extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
              operator_config: bool = True) -> "Sidecar":
        """`extra`: more `proxy run` arguments (--tcp, --app-tcp, --token ...); `env`: more environment;
        `operator_config` False: without the operator's client config (Sidecar)."""
        sidecar = Sidecar(self, service, app_port, service_port, namespace, labels, extra, env, operator_config)
        self.proxies.append(sidecar.process)
        return sidecar

    def stop(self) -> None:
        for proc in [*self.proxies, *reversed(list(self.services.values())), self.etcd, self.nats]:
            proc.stop(5)
        if os.environ.get(CONFIG_ENV) == str(self.config_path):
            if self._saved_env is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = self._saved_env


class Sidecar:
    """A real sidecar process started with the CLI, as a user would."""

    def __init__(self, plane: ControlPlane, service: str, app_port: int, service_port: int,
                 namespace: str, labels: str, extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 operator_config: bool = True) -> None:
        """`operator_config` False: the sidecar runs without the operator's client config (as on a workload's
        own host), so it needs a token or what its --state-dir kept."""
        self.outbound_port, self.inbound_port, self.admin_port = free_port(), free_port(), free_port()
        name = f"proxy-{service}-{self.inbound_port}"
        config = ["--config", str(plane.config_path)] if operator_config else []
        argv = [sys.executable, "-m", "isthmus.cli", *config, "--nats", plane.nats_url,
                "proxy", "run",
                "--service", service, "--namespace", namespace, "--service-port", str(service_port),
                "--app-port", str(app_port), "--inbound-port", str(self.inbound_port),
                "--outbound-port", str(self.outbound_port), "--admin-port", str(self.admin_port),
                "--lease-ttl", str(LEASE_TTL)]
        if labels:
            argv += ["--labels", labels]
        argv += extra
        environment = project_env(env)
        if not operator_config:
            environment.pop(CONFIG_ENV, None)
        self.process = ManagedProcess(name, argv, log_path=plane.state_dir / "logs" / f"{name}.log",
                                      env=environment)
        self.process.start()

    def admin(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def log_lines(self) -> list[dict]:
        """The sidecar's JSON log lines so far (its stderr, as `isthmus proxy run` prints them)."""
        path = self.process.log_path
        assert path is not None
        lines = []
        for text in path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
        return lines

    def config_dump(self) -> dict:
        return json.loads(self.admin("/config_dump")[1])

    def endpoints(self, host: str, healthy_only: bool = False) -> int:
        """How many endpoints this sidecar holds for the cluster of `host` (a FQDN); 0 while it has none."""
        return sum(1 for c in self.config_dump()["clusters"] if c["host"] == host
                   for e in c.get("endpoints", ()) if not healthy_only or e.get("healthy", True))

    async def holds(self, revision: int, timeout: float = 10.0) -> None:
        """Wait until this sidecar holds config at least as new as the given etcd revision."""
        await eventually(lambda: self.config_dump()["version"] >= revision, timeout)

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
        for name in ("auth", "registry", "pilot", "ca"):  # the ca: sidecars without a token mint one and get certificates
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
    bus = await plane.bus("test-apply")
    try:
        return json.loads(await bus.request("isthmus.config.apply", text.encode(), timeout=10))
    finally:
        await bus.close()


async def delete(plane: ControlPlane, kind: str, name: str, namespace: str = "default") -> dict:
    """Delete one resource through the config API, as `isthmus delete KIND NAME` does."""
    bus = await plane.bus("test-delete")
    try:
        body = {"resources": [{"kind": kind, "namespace": namespace, "name": name}]}
        return json.loads(await bus.request("isthmus.config.delete", json.dumps(body).encode(), timeout=10))
    finally:
        await bus.close()


async def apply_ok(plane: ControlPlane, text: str, *sidecars: Sidecar) -> dict:
    """Apply YAML, assert it was accepted, and wait until each of `sidecars` holds it; the reply is returned."""
    reply = await apply(plane, text)
    assert reply["ok"], reply
    for sidecar in sidecars:
        await sidecar.holds(reply["revision"])
    return reply


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


def reviews_doc(kind: str, ns: str, spec: str) -> str:
    """An Istio resource of `kind` named reviews in `ns`; `spec`: its fields, YAML lines indented two spaces."""
    return f"""
apiVersion: networking.istio.io/v1
kind: {kind}
metadata: {{name: reviews, namespace: {ns}}}
spec:
{spec}"""


def destination_rule(ns: str, versions: tuple[str, ...] = ("v1", "v2", "v3"), traffic_policy: str = "") -> str:
    """A DestinationRule for reviews in `ns`: a subset per version (label version=<v>), and the
    `traffic_policy` given (flow-style YAML), if any."""
    subsets = "".join(f"  - {{name: {v}, labels: {{version: {v}}}}}\n" for v in versions)
    return reviews_doc("DestinationRule", ns, "  host: reviews\n" + (f"  subsets:\n{subsets}" if versions else "")
                       + (f"  trafficPolicy: {traffic_policy}\n" if traffic_policy else ""))


def route_to(ns: str, subset: str = "", fields: str = "") -> str:
    """A VirtualService for reviews in `ns` with one HTTP rule to `subset` (all of reviews when empty);
    `fields`: more fields of that rule, as YAML lines indented four spaces."""
    destination = f"{{host: reviews, subset: {subset}}}" if subset else "{host: reviews}"
    return reviews_doc("VirtualService", ns,
                       f"  hosts: [reviews]\n  http:\n  - route:\n    - destination: {destination}\n{fields}")


class Bookinfo:
    """reviews in `versions` and a frontend, each with its own sidecar, in a namespace of their own;
    `frontend_args`: more `proxy run` arguments for the frontend's sidecar."""

    def __init__(self, mesh: ControlPlane, versions: tuple[str, ...] = ("v1", "v2", "v3"), prefix: str = "t",
                 frontend_args: tuple[str, ...] = ()) -> None:
        self.mesh = mesh
        self.ns = f"{prefix}{next(_namespaces)}"
        self.host = fqdn("reviews", self.ns)
        self.versions = versions
        self.frontend_args = frontend_args
        self.backends: dict[str, Backend] = {}
        self.sidecars: dict[str, Sidecar] = {}

    async def start(self) -> "Bookinfo":
        for version in self.versions:
            backend = await Backend(version).start()
            self.backends[version] = backend
            self.sidecars[version] = self.mesh.proxy("reviews", backend.port, 9080, self.ns,
                                                     f"app=reviews,version={version}")
        front = self.backends["frontend"] = await Backend("frontend").start()
        self.frontend = self.mesh.proxy("frontend", front.port, 9080, self.ns, "app=frontend", self.frontend_args)
        for sidecar in [*self.sidecars.values(), self.frontend]:
            await sidecar.ready()
        await self.wait_endpoints(len(self.versions))
        self.client = Client("127.0.0.1", self.frontend.outbound_port)
        return self

    def endpoints(self) -> int:
        """The healthy reviews endpoints the frontend's sidecar holds."""
        return self.frontend.endpoints(self.host, healthy_only=True)

    async def wait_endpoints(self, count: int, timeout: float = 10.0) -> None:
        try:
            await eventually(lambda: self.endpoints() == count, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; frontend holds {self.frontend.config_dump()}") from None

    def route_version(self) -> int:
        return next((r["version"] for r in self.frontend.config_dump()["routes"] if r["host"] == self.host), 0)

    async def apply(self, text: str) -> dict:
        reply = await apply(self.mesh, text)
        assert reply["ok"], reply
        return reply

    async def converged(self, revision: int) -> None:
        """The frontend's sidecar holds config at least as new as the given etcd revision."""
        await self.frontend.holds(revision)

    async def count(self, n: int, headers: dict[str, str] | None = None) -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(n):
            response = await self.client.request("GET", "http://reviews:9080/reviews", headers)
            seen[response.text if response.status == 200 else str(response.status)] += 1
        return seen

    async def stop(self) -> None:
        await self.client.close()
        for backend in self.backends.values():
            await backend.stop()


@pytest.fixture
async def bookinfo(mesh: ControlPlane):  # type: ignore[no-untyped-def]
    """Bookinfo's reviews v1/v2/v3 and a frontend, started; stopped when the test ends."""
    app = await Bookinfo(mesh).start()
    yield app
    await app.stop()

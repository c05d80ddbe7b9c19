"""The workloads of the authorization tests (AuthorizationPolicy, RequestAuthentication), as Istio's security
tasks deploy them, each app behind a real sidecar with its own namespace and service account (so its own
mTLS identity `cluster.local/ns/<ns>/sa/<sa>`), plus a plaintext caller with no sidecar:

    default  productpage (sa bookinfo-productpage), details (sa bookinfo-details)     "HTTP traffic"
    foo      httpbin (sa httpbin, port 8000), sleep (sa sleep), tcp-echo (9000, 9001, 9002)
    bar      sleep (sa sleep): the same service account in another namespace

Requests leave from a caller's sidecar as its app would send them (the outbound listener as HTTP proxy,
or a `--tcp` local port); each server sidecar writes its access log to a file the tests read. One `AuthzMesh`
lives for a test module (started once, policies applied and deleted between tests).
"""

from __future__ import annotations

import asyncio
import json
import random

import yaml

from isthmus.launch import free_port
from tests.integration.conftest import ControlPlane, Sidecar, apply, eventually, fqdn
from tests.integration.httpclient import AppServer, Backend, Client, Response

TRUST_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"
TCP_PORTS = (9000, 9001, 9002)  # tcp-echo's service ports in Istio's "TCP traffic" task
# The app port behind each: the same numbers, as in Istio's sample, because a rule's `ports` (and
# destination.port) name the workload's port, the one the app listens on (Istio's targetPort). The apps
# listen on a loopback address of their own (`proxy run --app-host`), so these fixed ports never collide
# with another run's or another program's on 127.0.0.1.
ECHO_PORTS = {port: port for port in TCP_PORTS}
ECHO_HOST = f"127.{random.randrange(1, 255)}.{random.randrange(0, 256)}.{random.randrange(1, 255)}"


class TcpEcho(AppServer):
    """Istio's tcp-echo sample: answers each line with `hello <line>`; one listener per port."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.lines: list[bytes] = []
        self.want_port = port
        self.host = ECHO_HOST

    async def start(self):  # type: ignore[no-untyped-def]
        self.server = await asyncio.start_server(self._serve, self.host, self.want_port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        self.lines.append(line)
        writer.write(b"hello " + line)
        await writer.drain()
        return True


class Workload:
    """One app and its sidecar. `principal` is Istio's source.principal for its mTLS identity."""

    def __init__(self, mesh: ControlPlane, name: str, ns: str, sa: str, service_port: int = 80,
                 extra: tuple[str, ...] = ()) -> None:
        self.name, self.ns, self.sa, self.service_port = name, ns, sa, service_port
        self.principal = f"{TRUST_DOMAIN}/ns/{ns}/sa/{sa}"
        self.log = mesh.state_dir / "logs" / f"access-{name}-{ns}.log"
        self.mesh, self.extra = mesh, extra
        self.app = Backend(name)
        self.sidecar: Sidecar | None = None

    async def start(self) -> "Workload":
        await self.app.start()
        self.sidecar = self.mesh.proxy(self.name, self.app.port, self.service_port, self.ns, f"app={self.name}",
                                       ("--service-account", self.sa, "--access-log", str(self.log), *self.extra))
        return self

    @property
    def side(self) -> Sidecar:
        assert self.sidecar is not None
        return self.sidecar

    def lines(self) -> list[str]:
        """The access-log lines written so far (flushed every 0.5 s)."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    async def logged(self, *parts: str, after: int = 0, timeout: float = 10.0) -> str:
        """The first access-log line past the first `after` lines that holds every one of `parts`."""
        def find() -> str | None:
            return next((line for line in self.lines()[after:] if all(p in line for p in parts)), None)
        try:
            return await eventually(find, timeout)
        except AssertionError:
            raise AssertionError(f"no access-log line with {parts} in {self.log}:\n"
                                 + "\n".join(self.lines()[after:][-20:])) from None

    def jwt(self) -> list[dict]:
        """The JWT providers this sidecar holds (/config_dump): source, issuer, jwks_uri, keys, jwks_error."""
        return self.side.config_dump()["security"].get("jwt", [])

    async def jwt_keys(self, issuer: str, timeout: float = 15.0) -> dict:
        """Wait until the sidecar holds keys for `issuer`: pilot pushes a jwksUri's rule first with
        `jwks_error: fetching ...: no answer yet` and the keys in a later push (docs/decisions.md)."""
        return await eventually(lambda: next((j for j in self.jwt() if j["issuer"] == issuer and j["keys"]),
                                             None), timeout)

    def authorization(self) -> list[str]:
        """The names ("ns/name") of the AuthorizationPolicies this sidecar holds (its /config_dump)."""
        return [p["name"] for p in self.side.config_dump()["security"].get("authorization", [])]


class AuthzMesh:
    """The workloads above, started together; `call` and `tcp` send traffic as the callers' apps would."""

    def __init__(self, mesh: ControlPlane, tcp: bool = False) -> None:
        """`tcp`: with tcp-echo (its apps on ECHO_HOST:9000-9002) and sleep.foo's `--tcp` ports to it."""
        self.mesh = mesh
        # (kind, namespace, name) -> the workloads it concerns, deleted after each test
        self.applied: dict[tuple[str, str, str], list[Workload]] = {}
        # sleep.foo's local port per tcp-echo port
        self.tcp_local = {port: free_port() for port in TCP_PORTS} if tcp else {}
        self.echo = {port: TcpEcho(ECHO_PORTS[port]) for port in self.tcp_local}  # an app per service port
        self.productpage = Workload(mesh, "productpage", "default", "bookinfo-productpage", 9080)
        self.details = Workload(mesh, "details", "default", "bookinfo-details", 9080)
        self.httpbin = Workload(mesh, "httpbin", "foo", "httpbin", 8000)
        self.sleep = Workload(mesh, "sleep", "foo", "sleep", 80,
                              tuple(a for port, local in self.tcp_local.items()
                                    for a in ("--tcp", f"tcp-echo:{port}={local}")))
        self.sleep_bar = Workload(mesh, "sleep", "bar", "sleep", 80)
        self.workloads = [self.productpage, self.details, self.httpbin, self.sleep, self.sleep_bar]

    async def start(self) -> "AuthzMesh":
        for echo in self.echo.values():
            await echo.start()
        for workload in self.workloads:
            await workload.start()
        if self.echo:
            self.tcp_echo = Workload(self.mesh, "tcp-echo", "foo", "tcp-echo", 9005,
                                     ("--app-host", ECHO_HOST,
                                      *(a for port in TCP_PORTS for a in ("--app-tcp", f"{port}={port}"))))
            self.tcp_echo.app.host = ECHO_HOST
            await self.tcp_echo.start()
            self.workloads.append(self.tcp_echo)
        await asyncio.gather(*(w.side.ready(60) for w in self.workloads))
        # every caller holds the endpoints it calls (with their identities: auto mTLS)
        for caller, host in ((self.productpage, fqdn("details", "default")), (self.sleep, fqdn("httpbin", "foo")),
                             (self.sleep_bar, fqdn("httpbin", "foo")),
                             *(((self.sleep, fqdn("tcp-echo", "foo")),) if self.echo else ())):
            await eventually(lambda: caller.side.endpoints(host) >= 1, 30)
        return self

    async def stop(self) -> None:
        for workload in self.workloads:
            await workload.app.stop()
        for echo in self.echo.values():
            await echo.stop()

    # --- traffic ---------------------------------------------------------------------------------------
    async def call(self, caller: Workload | None, url: str, method: str = "GET",
                   headers: dict[str, str] | None = None, target: Workload | None = None) -> Response:
        """One request to `url` (http://host:port/path) as `caller`'s app sends it through its sidecar; with
        `caller` None, a plaintext client with no sidecar sends it straight to `target`'s inbound port."""
        if caller is None:
            assert target is not None
            host, _, path = url.removeprefix("http://").partition("/")
            client = Client("127.0.0.1", target.side.inbound_port)
            headers = {"host": host, **(headers or {})}
            url = "/" + path
        else:
            client = Client("127.0.0.1", caller.side.outbound_port)
        try:
            return await client.request(method, url, headers)
        finally:
            await client.close()

    async def status(self, caller: Workload | None, url: str, method: str = "GET",
                     headers: dict[str, str] | None = None, target: Workload | None = None) -> int:
        return (await self.call(caller, url, method, headers, target)).status

    async def tcp(self, port: int, line: str | None = None, timeout: float = 5.0) -> str:
        """`echo "port <port>" | nc tcp-echo <port>` from sleep.foo: what came back ("" when the connection
        was closed without an answer, as Istio's task prints "connection rejected")."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.tcp_local[port])
        try:
            writer.write(f"{line or f'port {port}'}\n".encode())
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), timeout)).decode()
        except (ConnectionError, asyncio.IncompleteReadError):
            return ""
        finally:
            writer.close()

    # --- config ----------------------------------------------------------------------------------------
    async def apply(self, text: str, *holders: Workload) -> dict:
        """Apply YAML through the config API as `isthmus apply -f` does; assert it was accepted and wait until
        each of `holders` (default: the workloads it concerns) holds it."""
        reply = await apply(self.mesh, text)
        assert reply["ok"], reply
        concerned: list[Workload] = []
        for doc in yaml.safe_load_all(text):
            if doc:
                key = (doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"])
                self.applied[key] = self.concerned(doc)
                concerned += self.applied[key]
        await self.converged(reply["revision"], *(holders or concerned))
        return reply

    def concerned(self, doc: dict) -> list[Workload]:
        """The workloads a security policy applies to (Istio's scope: the root namespace's apply in every
        namespace, a selector picks by labels); every workload for other kinds."""
        if doc["kind"] not in ("AuthorizationPolicy", "RequestAuthentication", "PeerAuthentication"):
            return self.workloads
        ns = doc["metadata"]["namespace"]
        labels = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return [w for w in self.workloads if (ns == ROOT_NAMESPACE or w.ns == ns)
                and all(k == "app" and v == w.name for k, v in labels.items())]

    async def clean(self) -> None:
        """Delete what the test applied; every sidecar holds the change before the next test starts."""
        if self.applied:
            await self.delete(sorted(self.applied))

    async def delete(self, refs: list[tuple[str, str, str]], *holders: Workload) -> dict:
        """Delete (kind, namespace, name) resources and wait until `holders` (default: the workloads they
        concern) hold the change."""
        bus = await self.mesh.bus("test-delete")
        try:
            body = {"resources": [{"kind": k, "namespace": ns, "name": n} for k, ns, n in refs]}
            reply = json.loads(await bus.request("isthmus.config.delete", json.dumps(body).encode(), timeout=10))
        finally:
            await bus.close()
        assert reply["ok"], reply
        concerned = {id(w): w for ref in refs for w in self.applied.pop(ref, self.workloads)}
        if reply["revision"]:
            await self.converged(reply["revision"], *(holders or concerned.values()))
        return reply

    async def converged(self, revision: int, *holders: Workload) -> None:
        await asyncio.gather(*(w.side.holds(revision, 15) for w in (holders or self.workloads)))


def cli(mesh: ControlPlane, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run `isthmus <args>` as a user does (the operator's client config from ISTHMUS_CONFIG)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "isthmus.cli", "--nats", mesh.nats_url, *args], input=stdin,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


async def denied_line(workload: Workload, ns: str, name: str, after: int = 0, tcp: bool = False) -> str:
    """The access-log line of `workload`'s sidecar for a request (or TCP connection) denied by the policy
    `ns`/`name`, past its first `after` lines: Envoy's RBAC detail names the policy
    (`rbac_access_denied_matched_policy[ns[<ns>]-policy[<name>]-rule[<i>]]`), an HTTP denial is a 403."""
    return await workload.logged(f"rbac_access_denied_matched_policy[ns[{ns}]-policy[{name}]-rule[",
                                 *(() if tcp else (" 403 ",)), after=after)


async def denied_by_no_allow(workload: Workload, after: int = 0, tcp: bool = False) -> str:
    """The access-log line of a request no ALLOW policy matched: Envoy names no policy then
    (`rbac_access_denied_matched_policy[none]`)."""
    return await workload.logged("rbac_access_denied_matched_policy[none]", *(() if tcp else (" 403 ",)),
                                 after=after)

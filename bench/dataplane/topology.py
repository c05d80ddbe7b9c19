"""What the data-plane benchmark measures, started from scratch on loopback and stopped at the end.

    nginx                  the backend: 1 worker, keep-alive, access_log off, a fixed 98-byte body
    HAProxy pair           client-side -> server-side -> nginx, `nbthread 1`, keep-alive both sides
    HAProxy TCP pair       the same in `mode tcp`: bytes relayed, no HTTP parsing
    bare pair              client-side -> server-side -> nginx, each `python -m bench.dataplane.bare_proxy`:
                           uvloop + httptools, framing parsed, bytes forwarded as received (what Python allows)
    bare TLS pair          the same with mutual TLS 1.3 between them (BARE_TLS_TRANSPORT's SSL transport, the
                           HAProxy TLS pair's certificates)
    Isthmus mesh           nats + etcd + registry + pilot + ca (a sidecar is ready once it holds a certificate),
                           and two sidecars started as a user would
                           (`python -m isthmus.cli proxy run ...`): `bench-backend` beside nginx and
                           `bench-client`, configured through the config API (a VirtualService, and with
                           features on an AuthorizationPolicy of ten rules: bench/dataplane/features.py);
                           the client also has `--tcp bench-backend:9090=<port>` and the server
                           `--app-tcp 9090=<nginx's second port>`: the Isthmus TCP pair (HTTP carried as opaque
                           bytes; its own nginx port so that the policy's `ports` rule names it alone)
    Isthmus mTLS pair      two more sidecars, the same services in namespace bench-mtls, where a PeerAuthentication
                           STRICT makes their traffic mutual TLS (bench/dataplane/mtls.py)
    HAProxy TLS pair       TLS 1.3 between the pair, client certificates verified (bench/dataplane/mtls.py)

Pinning (when the machine has two cores or more): the proxies run on `proxy_core` (taskset -c 1),
the load generator and nginx share `load_core` (taskset -c 0). The control plane (nats, etcd,
registry, pilot) is left unpinned: it is idle while we measure (one heartbeat per sidecar a second).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.dataplane.features import DENIED_PATH, RULES, authz_policy
from bench.dataplane.procstat import children
from isthmus.launch import (
    LaunchError,
    ManagedProcess,
    accepts,
    free_port,
    project_env,
    service_process,
    wait_ready,
)
from isthmus.launch.secure import start_secure

from bench.dataplane.mtls import (HANDSHAKE_PATH, MTLS_CONFIG, MTLS_NAMESPACE, SERVER_NAME, Certs, http_get_path,
                                  make_certs, start_haproxy_tls)

BODY = b"isthmus-bench " + b"x" * 83 + b"\n"  # 98 bytes, like a small JSON answer
SERVICE = "bench-backend"
SERVICE_PORT = 9080
HOST_HEADER = f"{SERVICE}:{SERVICE_PORT}"
TCP_SERVICE_PORT = 9090  # bench-backend's opaque TCP port (nginx again, its bytes relayed unparsed)
NAMESPACE = "default"
FQDN = f"{SERVICE}.{NAMESPACE}.svc.cluster.local"
BARE_TLS_TRANSPORT = "uvloop"  # the bare TLS pair's transport (issue 15 measured 0.73x HAProxy TLS on uvloop's)


@dataclass(frozen=True)
class Pinning:
    load_core: int | None  # wrk, hey and nginx
    proxy_core: int | None  # every proxy process

    @classmethod
    def detect(cls) -> "Pinning":
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(None, None)
        return cls(cores[0], cores[1])

    def prefix(self, core: int | None) -> list[str]:
        return ["taskset", "-c", str(core)] if core is not None else []

    def describe(self) -> str:
        if self.proxy_core is None:
            return "none (fewer than 2 cores)"
        return (f"proxies on core {self.proxy_core}; load generator and nginx (1 worker) on core "
                f"{self.load_core}; control plane unpinned")


def http_get(port: int, host: str = HOST_HEADER, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait(check, what: str, timeout: float, proc: ManagedProcess | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.is_running:
            raise LaunchError(f"{what}: {proc.name} exited ({proc.returncode})\n{proc.log_tail()}")
        try:
            last = check()
            if last:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    tail = f"\n{proc.log_tail()}" if proc is not None else ""
    raise LaunchError(f"{what}: not within {timeout:g}s (last: {last!r}){tail}")


def _body_ok(port: int, path: str = "/") -> bool:
    status, body = http_get_path(port, path, HOST_HEADER)
    return status == 200 and body == BODY


# ------------------------------------------------------------------------------------------ nginx

NGINX_CONF = """\
# written by bench/dataplane/topology.py
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 10000000;  # the default (1000) would make every client reconnect mid-run
    server {{
{listen}
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
}}
"""


def start_nginx(work: Path, pin: Pinning) -> tuple[ManagedProcess, int]:
    """nginx on a free port: (process, port)."""
    proc, ports = start_nginx_ports(work, pin, 1)
    return proc, ports[0]


def start_nginx_ports(work: Path, pin: Pinning, count: int) -> tuple[ManagedProcess, list[int]]:
    """nginx listening on `count` free ports, the same server on each: (process, ports)."""
    d = work / "nginx"
    d.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(count)]
    conf = d / "nginx.conf"
    body = BODY.decode().rstrip("\n") + "\\n"
    listen = "\n".join(f"        listen 127.0.0.1:{port} backlog=4096;" for port in ports)
    conf.write_text(NGINX_CONF.format(dir=d, listen=listen, body=body))
    proc = ManagedProcess("nginx", [*pin.prefix(pin.load_core), "nginx", "-c", str(conf), "-p", str(d),
                                    "-g", "daemon off;"], log_path=work / "logs" / "nginx.log")
    proc.start()
    try:
        _wait(lambda: all(_body_ok(port) for port in ports), "nginx serving", 10, proc)
    except BaseException:
        proc.stop(2)
        raise
    return proc, ports


# ---------------------------------------------------------------------------------------- haproxy

HAPROXY_CFG = """\
# written by bench/dataplane/topology.py
global
    nbthread 1
    maxconn 4096
defaults
{mode}
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server upstream 127.0.0.1:{upstream}
"""


HAPROXY_MODES = {
    "http": "    mode http\n    timeout http-keep-alive 60s\n    option http-keep-alive\n    http-reuse always",
    "tcp": "    mode tcp",
}


def start_haproxy(work: Path, name: str, upstream: int, pin: Pinning, mode: str = "http") -> tuple[ManagedProcess, int]:
    port = free_port()
    cfg = work / f"{name}.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, upstream=upstream, mode=HAPROXY_MODES[mode]))
    check = ManagedProcess(f"{name}-check", ["haproxy", "-c", "-q", "-f", str(cfg)])
    check.start()
    if check.popen is not None and check.popen.wait(10) != 0:
        raise LaunchError(f"haproxy rejected {cfg}")
    proc = ManagedProcess(name, [*pin.prefix(pin.proxy_core), "haproxy", "-f", str(cfg), "-db"],
                          log_path=work / "logs" / f"{name}.log")
    proc.start()
    try:
        _wait(lambda: accepts(port), f"{name} listening", 10, proc)
    except BaseException:
        proc.stop(2)
        raise
    return proc, port


# ------------------------------------------------------------------------------------- bare proxy


def bare_tls_flags(certs: Certs, client: bool) -> tuple[str, ...]:
    """The bare TLS pair's flags: the client side originates with its certificate and verifies the server's
    (name bench-backend), the server side terminates and requires a client certificate from the same CA."""
    common = ("--ca", str(certs.ca), "--tls-transport", BARE_TLS_TRANSPORT)
    if client:
        return (*common, "--tls-client", str(certs.client), "--server-name", SERVER_NAME)
    return (*common, "--tls-server", str(certs.server))


def start_bare(work: Path, name: str, upstream: int, pin: Pinning,
               tls: tuple[str, ...] = ()) -> tuple[ManagedProcess, int]:
    """bench/dataplane/bare_proxy.py on a free port, forwarding to 127.0.0.1:upstream, on the proxy core."""
    port = free_port()
    argv = [*pin.prefix(pin.proxy_core), sys.executable, "-m", "bench.dataplane.bare_proxy", "--port", str(port),
            "--upstream", str(upstream), *tls]
    proc = ManagedProcess(name, argv, log_path=work / "logs" / f"{name}.log", env=project_env())
    proc.start()
    try:
        _wait(lambda: accepts(port), f"{name} listening", 10, proc)
    except BaseException:
        proc.stop(2)
        raise
    return proc, port


# ---------------------------------------------------------------------------------------- isthmus

VIRTUAL_SERVICE = f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {SERVICE}, namespace: {NAMESPACE}}}
spec:
  hosts: [{SERVICE}]
  http:
  - route:
    - destination: {{host: {SERVICE}}}
---
# the plaintext rows stay plaintext: no mutual TLS between the sidecar pair (auto mTLS sends plaintext to DISABLE)
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: istio-system}}
spec:
  mtls: {{mode: DISABLE}}
"""


class Sidecar:
    """`python -m isthmus.cli --nats URL proxy run ...`, pinned to the proxy core."""

    def __init__(self, work: Path, config: Path, nats_url: str, service: str, app_port: int, labels: str,
                 pin: Pinning, extra: tuple[str, ...] = (), namespace: str = NAMESPACE) -> None:
        self.service = service
        self.fqdn = f"{service}.{namespace}.svc.cluster.local"
        name = service if namespace == NAMESPACE else f"{service}-{namespace}"
        self.outbound_port, self.inbound_port, self.admin_port = free_port(), free_port(), free_port()
        argv = [*pin.prefix(pin.proxy_core), sys.executable, "-m", "isthmus.cli", "--config", str(config),
                "--nats", nats_url, "proxy", "run", "--service", service, "--namespace", namespace,
                "--service-port", str(SERVICE_PORT), "--app-port", str(app_port),
                "--inbound-port", str(self.inbound_port), "--outbound-port", str(self.outbound_port),
                "--admin-port", str(self.admin_port), "--labels", labels, "--log-level", "warning", *extra]
        self.process = ManagedProcess(f"sidecar-{name}", argv, log_path=work / "logs" / f"sidecar-{name}.log",
                                      env=project_env())

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def admin(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def ready(self) -> bool:
        return self.admin("/ready")[0] == 200

    def routes_to(self, inbound_port: int, fqdn: str = FQDN) -> bool:
        """The client's view: a route for bench-backend, and its cluster has our server's endpoint, healthy."""
        dump = json.loads(self.admin("/config_dump")[1])
        if not any(r.get("host") == fqdn for r in dump.get("routes", [])):
            return False
        for cluster in dump.get("clusters", []):
            if cluster.get("host") == fqdn:
                return any(ep.get("healthy", True) and inbound_port in (ep.get("ports") or {}).values()
                           for ep in cluster.get("endpoints", []))
        return False


def authz_rules(sidecar: Sidecar) -> int:
    """The AuthorizationPolicy rules the sidecar compiled from its last push."""
    return int(json.loads(sidecar.admin("/server_info")[1])["inbound_authz"]["rules"])


class Mesh:
    """The Isthmus control plane and the two sidecars; stop() stops whatever was started."""

    def __init__(self, work: Path, features: bool = True) -> None:
        self.work = work
        self.features = features  # the AuthorizationPolicy of ten rules on both server sidecars (features.py)
        self.processes: list[ManagedProcess] = []
        self.nats_url = ""
        self.server: Sidecar | None = None
        self.client: Sidecar | None = None
        self.mtls_server: Sidecar | None = None  # the mTLS pair, in MTLS_NAMESPACE
        self.mtls_client: Sidecar | None = None
        self.tcp_port = 0  # the client sidecar's TCP listener for bench-backend:TCP_SERVICE_PORT
        self.operator: Any = None  # the operator's bus credentials (the benchmark applies its config with them)

    def start(self, app_port: int, pin: Pinning, tcp_app_port: int, timeout: float = 60.0) -> "Mesh":
        """Start it all and wait until every path answers nginx's body (and, with features, the policies are in
        force: the benchmark's request allowed, DENIED_PATH denied, on every Isthmus path)."""
        plane = start_secure(self.work, unsafe_no_fsync=True)  # locked down, as `isthmus up` runs it
        self.processes += [plane.nats, plane.etcd]
        self.nats_url, etcd_url = plane.nats.url or "", plane.etcd.url or ""
        self.operator = plane.creds.client_config("operator", self.nats_url).nats
        services = {name: service_process(name, self.nats_url, etcd_url, self.work, credentials=plane.creds)
                    for name in ("auth", "registry", "pilot", "ca")}
        for proc in services.values():
            self.processes.append(proc.start())
        # Sidecars start before the services are ready: listeners first, the bus when it answers.
        self.tcp_port = free_port()
        self.server = Sidecar(self.work, plane.operator_config, self.nats_url, SERVICE, app_port,
                              f"app={SERVICE},version=v1", pin,
                              ("--app-tcp", f"{TCP_SERVICE_PORT}={tcp_app_port}"))
        self.client = Sidecar(self.work, plane.operator_config, self.nats_url, "bench-client", app_port,
                              "app=bench-client", pin,
                              ("--tcp", f"{SERVICE}:{TCP_SERVICE_PORT}={self.tcp_port}"))
        self.mtls_server = Sidecar(self.work, plane.operator_config, self.nats_url, SERVICE, app_port,
                                   f"app={SERVICE},version=v1", pin, namespace=MTLS_NAMESPACE)
        self.mtls_client = Sidecar(self.work, plane.operator_config, self.nats_url, "bench-client", app_port,
                                   "app=bench-client", pin, namespace=MTLS_NAMESPACE)
        for sidecar in (self.server, self.client, self.mtls_server, self.mtls_client):
            self.processes.append(sidecar.process.start())
        configs = [VIRTUAL_SERVICE, MTLS_CONFIG]
        if self.features:
            configs += [authz_policy(NAMESPACE, False, tcp_app_port), authz_policy(MTLS_NAMESPACE, True)]
        asyncio.run(self._configure(services, configs, timeout))
        server, client = self.server, self.client
        _wait(server.ready, "server sidecar /ready", timeout, server.process)
        _wait(client.ready, "client sidecar /ready", timeout, client.process)
        rules = RULES if self.features else 0
        for sidecar in (server, self.mtls_server):
            _wait(lambda: authz_rules(sidecar) == rules, f"{sidecar.process.name}: {rules} authorization rules",
                  timeout, sidecar.process)
        _wait(lambda: client.routes_to(server.inbound_port), "client sidecar holds the route and endpoint",
              timeout, client.process)
        _wait(lambda: _body_ok(client.outbound_port), "nginx's body through the sidecar pair", timeout,
              client.process)
        _wait(lambda: _body_ok(server.inbound_port), "nginx's body through the server sidecar", timeout,
              server.process)
        _wait(lambda: _body_ok(self.tcp_port), "nginx's body through the TCP sidecar pair", timeout, client.process)
        ms, mc = self.mtls_server, self.mtls_client
        _wait(ms.ready, "mTLS server sidecar /ready", timeout, ms.process)
        _wait(mc.ready, "mTLS client sidecar /ready", timeout, mc.process)
        _wait(lambda: mc.routes_to(ms.inbound_port, ms.fqdn), "mTLS client sidecar holds the route and endpoint",
              timeout, mc.process)
        for path in ("/", HANDSHAKE_PATH):
            _wait(lambda: _body_ok(mc.outbound_port, path), f"nginx's body through the mTLS sidecar pair ({path})",
                  timeout, mc.process)
        if self.features:  # the policy is in force: what no rule allows is denied, on every Isthmus path
            for what, port in (("pair", client.outbound_port), ("single", server.inbound_port),
                               ("mTLS pair", mc.outbound_port)):
                status, body = http_get_path(port, DENIED_PATH, HOST_HEADER)
                if status != 403:
                    raise LaunchError(f"the AuthorizationPolicy is not in force on the {what}: GET {DENIED_PATH} "
                                      f"answered {status} {body[:200]!r}, not 403")
        return self

    async def _configure(self, services: dict[str, ManagedProcess], configs: list[str], timeout: float) -> None:
        from runtime import bus as busmod

        bus = await busmod.connect(self.nats_url, "bench-dataplane", auth=self.operator)
        try:
            for name, proc in services.items():
                await wait_ready(bus, name, timeout, process=proc)
            for config in configs:
                reply = json.loads(await bus.request("isthmus.config.apply", config.encode(), timeout=10))
                if not reply.get("ok"):
                    raise LaunchError(f"config apply refused the benchmark's config: {reply}")
        finally:
            await bus.close()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(5)


# --------------------------------------------------------------------------------------- topology


class Topology:
    """Everything the benchmark drives. Use as a context manager: __exit__ stops it all, even on error."""

    def __init__(self, work: Path, pin: Pinning, features: bool = True) -> None:
        self.work = work
        self.pin = pin
        self.processes: list[ManagedProcess] = []
        self.mesh = Mesh(work / "mesh", features)
        self.nginx_port = self.nginx_tcp_port = self.haproxy_client_port = self.haproxy_server_port = 0
        self.haproxy_client: ManagedProcess | None = None
        self.haproxy_server: ManagedProcess | None = None
        self.haproxy_tcp: dict[str, tuple[ManagedProcess, int]] = {}  # "client"/"server" -> (process, port)
        self.bare: dict[str, tuple[ManagedProcess, int]] = {}  # "client"/"server" -> (process, port)
        self.bare_tls: dict[str, tuple[ManagedProcess, int]] = {}  # "client"/"server" -> (process, port)
        self.haproxy_tls: dict[str, tuple[ManagedProcess, int]] = {}  # "client"/"server" -> (process, port)
        self.haproxy_tls_handshake_port = 0  # the TLS client side's one-request-per-connection frontend

    def __enter__(self) -> "Topology":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        # the Isthmus TCP pair has its own nginx port, so that the policy's `ports` rule names it alone
        nginx, (self.nginx_port, self.nginx_tcp_port) = start_nginx_ports(self.work, self.pin, 2)
        self.processes.append(nginx)
        self.haproxy_server, self.haproxy_server_port = start_haproxy(self.work, "haproxy-server", self.nginx_port,
                                                                      self.pin)
        self.processes.append(self.haproxy_server)
        self.haproxy_client, self.haproxy_client_port = start_haproxy(self.work, "haproxy-client",
                                                                      self.haproxy_server_port, self.pin)
        self.processes.append(self.haproxy_client)
        _wait(lambda: _body_ok(self.haproxy_client_port), "nginx's body through the HAProxy pair", 10)
        server = self.haproxy_tcp["server"] = start_haproxy(self.work, "haproxy-tcp-server", self.nginx_port,
                                                            self.pin, "tcp")
        self.processes.append(server[0])
        client = self.haproxy_tcp["client"] = start_haproxy(self.work, "haproxy-tcp-client", server[1], self.pin,
                                                            "tcp")
        self.processes.append(client[0])
        _wait(lambda: _body_ok(client[1]), "nginx's body through the HAProxy TCP pair", 10)
        bare_server = self.bare["server"] = start_bare(self.work, "bare-server", self.nginx_port, self.pin)
        self.processes.append(bare_server[0])
        bare_client = self.bare["client"] = start_bare(self.work, "bare-client", bare_server[1], self.pin)
        self.processes.append(bare_client[0])
        _wait(lambda: _body_ok(bare_client[1]), "nginx's body through the bare pair", 10, bare_client[0])
        certs = make_certs(self.work / "tls")
        prefix = self.pin.prefix(self.pin.proxy_core)
        tls_server, port, _ = start_haproxy_tls(self.work, "haproxy-tls-server", self.nginx_port, certs, prefix, False)
        self.processes.append(tls_server)
        self.haproxy_tls["server"] = (tls_server, port)
        tls_client, port, self.haproxy_tls_handshake_port = start_haproxy_tls(self.work, "haproxy-tls-client", port,
                                                                              certs, prefix, True)
        self.processes.append(tls_client)
        self.haproxy_tls["client"] = (tls_client, port)
        _wait(lambda: _body_ok(port), "nginx's body through the HAProxy TLS pair", 10, tls_client)
        _wait(lambda: _body_ok(self.haproxy_tls_handshake_port, HANDSHAKE_PATH),
              "nginx's body through the HAProxy TLS pair (a handshake per request)", 10, tls_client)
        bare_server = self.bare_tls["server"] = start_bare(self.work, "bare-tls-server", self.nginx_port, self.pin,
                                                           bare_tls_flags(certs, False))
        self.processes.append(bare_server[0])
        bare_client = self.bare_tls["client"] = start_bare(self.work, "bare-tls-client", bare_server[1], self.pin,
                                                           bare_tls_flags(certs, True))
        self.processes.append(bare_client[0])
        _wait(lambda: _body_ok(bare_client[1]), "nginx's body through the bare TLS pair", 10, bare_client[0])
        self.mesh.start(self.nginx_port, self.pin, self.nginx_tcp_port)

    def stop(self) -> None:
        self.mesh.stop()
        for proc in reversed(self.processes):
            proc.stop(5)

    def pids(self) -> list[int]:
        """Every process we started and nginx's worker: the CPU that is ours."""
        found = []
        for proc in [*self.processes, *self.mesh.processes]:
            if proc.pid is not None:
                found.append(proc.pid)
                found += children(proc.pid)
        return found

    @property
    def rows(self) -> dict[str, tuple[int, list[tuple[str, int]]]]:
        """row name -> (port the load goes to, [(proxy role, pid)...])"""
        m = self.mesh
        assert m.client is not None and m.server is not None
        mc, ms = m.mtls_client, m.mtls_server
        assert mc is not None and ms is not None
        assert self.haproxy_client is not None and self.haproxy_server is not None
        hc, hs = self.haproxy_client.pid, self.haproxy_server.pid
        assert hc is not None and hs is not None
        return {
            "direct": (self.nginx_port, []),
            "isthmus-pair": (m.client.outbound_port, [("client", m.client.pid), ("server", m.server.pid)]),
            "haproxy-pair": (self.haproxy_client_port, [("client", hc), ("server", hs)]),
            "isthmus-single": (m.server.inbound_port, [("server", m.server.pid)]),
            "haproxy-single": (self.haproxy_server_port, [("server", hs)]),
            "isthmus-tcp-pair": (m.tcp_port, [("client", m.client.pid), ("server", m.server.pid)]),
            "haproxy-tcp-pair": (self.haproxy_tcp["client"][1], [("client", self.haproxy_tcp["client"][0].pid or 0),
                                                                 ("server", self.haproxy_tcp["server"][0].pid or 0)]),
            "bare-pair": (self.bare["client"][1], [("client", self.bare["client"][0].pid or 0),
                                                   ("server", self.bare["server"][0].pid or 0)]),
            "bare-single": (self.bare["server"][1], [("server", self.bare["server"][0].pid or 0)]),
            "isthmus-mtls-pair": (mc.outbound_port, [("client", mc.pid), ("server", ms.pid)]),
            "haproxy-tls-pair": (self.haproxy_tls["client"][1], [("client", self.haproxy_tls["client"][0].pid or 0),
                                                                 ("server", self.haproxy_tls["server"][0].pid or 0)]),
            "bare-tls-pair": (self.bare_tls["client"][1], [("client", self.bare_tls["client"][0].pid or 0),
                                                           ("server", self.bare_tls["server"][0].pid or 0)]),
        }

    @property
    def handshake_rows(self) -> dict[str, tuple[str, list[tuple[str, int]]]]:
        """row name -> (URL, [(proxy role, pid)...]): one new mutual TLS connection between the pair per request."""
        rows = self.rows
        mc = self.mesh.mtls_client
        assert mc is not None
        return {
            "isthmus-mtls-handshake": (f"http://127.0.0.1:{mc.outbound_port}{HANDSHAKE_PATH}",
                                       rows["isthmus-mtls-pair"][1]),
            "haproxy-tls-handshake": (f"http://127.0.0.1:{self.haproxy_tls_handshake_port}{HANDSHAKE_PATH}",
                                      rows["haproxy-tls-pair"][1]),
        }

"""`isthmus up`: a whole control plane on loopback, supervised, until Ctrl-C or SIGTERM.

Start order: nats-server, etcd, then registry, pilot, ca and telemetry (started together, each waited
on through `isthmus.health.<name>`). A service that crashes later is restarted with backoff. On
Ctrl-C/SIGTERM/SIGHUP everything is stopped in reverse start order; if `isthmus up` itself is killed,
the children get SIGTERM from the kernel (see isthmus/launch/process.py), so nothing outlives it.

    <state-dir>/            default ./.isthmus
        up.lock             held while an `isthmus up` uses this directory
        nats/nats.conf      written on every start (mode 0600: it holds the bus roles' passwords)
        nats/tls/           the bus's CA and server certificate (--nats-tls)
        isthmus.yaml        the operator's client config (mode 0600): bus URL and credentials
        secrets/            the services' client configs, the auth callout's key, etcd's passwords (0700)
        etcd/               etcd's data: config survives restarts of `isthmus up`
        ca/                 the ca's root keys (0700; keys 0600), passed to services as ISTHMUS_STATE_DIR;
        ca/kek              with --ca-kek: the key sealing the signing key in etcd (0600; runtime/kek.py)
        logs/<name>.log     one per process (nats, etcd, registry, pilot, ca, telemetry, demo apps...)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from isthmus.launch import (
    LOOPBACK,
    SERVICES,
    LaunchError,
    ManagedProcess,
    Supervisor,
    bus_health_probe,
    port_in_use,
    service_process,
    start_etcd,
    start_nats,
    wait_ready,
)
from isthmus.launch.ports import port_range
from isthmus.launch.bustls import make_bus_tls
from isthmus.launch.credentials import ETCD_SERVICE_USER, MeshCredentials
from isthmus.launch.etcdauth import enable_auth
from isthmus.lockfile import hold, holder
from runtime.clientconfig import ENV as CONFIG_ENV
from runtime.clientconfig import save as save_config

NATS_TIMEOUT = 15.0
ETCD_TIMEOUT = 30.0
SERVICE_TIMEOUT = 45.0


def say(line: str = "") -> None:
    print(line, flush=True)


def warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def dashboard_url(bind: str, port: int) -> str:
    """Where a browser on this host reaches the telemetry service listening on `bind`:`port`."""
    host = LOOPBACK if bind in ("0.0.0.0", "::") else (f"[{bind}]" if ":" in bind else bind)
    return f"http://{host}:{port}/"


def check_ports(nats_port: int, etcd_port: int, dashboard_port: int | None = None,
                ingress: tuple[int, int] | None = None) -> str | None:
    """The first problem with the requested ports, as one line that names the flag (or variable) to change
    (`--nats-port 4222: address already in use`). `ingress`: the demo's ingress gateway's HTTP and HTTPS
    ports (with --demo)."""
    try:
        port_range()  # ISTHMUS_PORT_RANGE: the ports the demo and the dashboard's helpers pick; checked up front
    except ValueError as exc:
        return str(exc)
    if ingress is not None:
        for flag, port in zip(("--ingress-port", "--ingress-https-port"), ingress):
            if port in (nats_port, etcd_port, etcd_port + 1, dashboard_port):
                return (f"{flag} {port}: collides with the bus's, etcd's or the dashboard's ports "
                        "(--nats-port, --etcd-port, --dashboard-port)")
        from examples.bookinfo.ingress import check_ports as check_ingress_ports

        problem = check_ingress_ports(*ingress)
        if problem:
            return problem
    if nats_port in (etcd_port, etcd_port + 1):
        return f"--nats-port {nats_port}: collides with etcd's ports {etcd_port} and {etcd_port + 1} (--etcd-port)"
    if dashboard_port is not None and dashboard_port in (nats_port, etcd_port, etcd_port + 1):
        return f"--dashboard-port {dashboard_port}: collides with the bus's or etcd's ports (--nats-port, --etcd-port)"
    if dashboard_port is not None and port_in_use(dashboard_port):
        return f"--dashboard-port {dashboard_port}: address already in use"
    if port_in_use(nats_port):
        return f"--nats-port {nats_port}: address already in use"
    if port_in_use(etcd_port):
        return f"--etcd-port {etcd_port}: address already in use"
    if port_in_use(etcd_port + 1):
        return f"--etcd-port {etcd_port}: etcd's peer port {etcd_port + 1} (--etcd-port + 1): address already in use"
    return None


def run_up(state_dir: str | Path = ".isthmus", *, nats_port: int = 4222, etcd_port: int = 2379,
           demo: bool = False, outbound_traffic_policy: str | None = None,
           ca_env: dict[str, str] | None = None, nats_tls: bool = False, dashboard_port: int = 20001,
           dashboard_bind: str = LOOPBACK, ingress_port: int = 8080, ingress_https_port: int = 8443) -> int:
    """Run the control plane until a stop signal; returns the exit code. `outbound_traffic_policy`: pilot's
    mesh-wide ALLOW_ANY or REGISTRY_ONLY (None: ISTHMUS_OUTBOUND_TRAFFIC_POLICY or ALLOW_ANY). `ca_env`:
    ISTHMUS_TRUST_DOMAIN, ISTHMUS_ROOT_NAMESPACE (every service), the ca's certificate lifetime and plug-in
    CA files (services/ca/config.py), checked by the caller. `dashboard_port`, `dashboard_bind`: where the
    telemetry service listens (ISTHMUS_DASHBOARD_PORT / _BIND, which it reads). `ingress_port`, `ingress_https_port`:
    with `demo`, where the demo's ingress gateway serves Gateway ports 80 and 443 on 127.0.0.1."""
    os.environ["ISTHMUS_DASHBOARD_PORT"] = str(dashboard_port)
    os.environ["ISTHMUS_DASHBOARD_BIND"] = dashboard_bind
    if outbound_traffic_policy is not None:  # the services inherit it (pilot reads it; runtime/settings.py)
        os.environ["ISTHMUS_OUTBOUND_TRAFFIC_POLICY"] = outbound_traffic_policy
    os.environ.update({k: v for k, v in (ca_env or {}).items() if v})  # the services inherit these too
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    lock = hold(state / "up.lock")
    if lock is None:
        pid = holder(state / "up.lock")
        warn(f"error: another `isthmus up` (pid {pid}) is using {state}: stop it or pass --state-dir")
        return 1
    try:
        say(f"isthmus: state directory {state}")
        problem = check_ports(nats_port, etcd_port, dashboard_port, (ingress_port, ingress_https_port) if demo else None)
        if problem:
            warn(f"error: {problem}")
            return 2  # as a usage error: the flag names the fix
        from runtime.log import configure

        configure("error")  # this terminal is for people; the services log to their own files
        return asyncio.run(_main(state, nats_port, etcd_port, demo, nats_tls, dashboard_url(dashboard_bind,
                                                                                          dashboard_port),
                                 (ingress_port, ingress_https_port)))
    finally:
        lock.close()


async def _main(state: Path, nats_port: int, etcd_port: int, demo: bool, nats_tls: bool = False,
                dashboard: str = "", ingress: tuple[int, int] = (8080, 8443)) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(report=lambda line: warn(f"isthmus: {line}"))
    tasks: list[asyncio.Task[Any]] = []
    health_bus: Any = None
    code = 0
    try:
        creds = MeshCredentials.create(state)
        startup = asyncio.ensure_future(_start(state, nats_port, etcd_port, supervisor, creds, nats_tls))
        stopper = asyncio.ensure_future(stop.wait())
        tasks += [startup, stopper]
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            say("isthmus: interrupted during startup")
            return 0
        try:
            nats_url = startup.result()
        except LaunchError as exc:
            warn(f"error: {exc}")
            return 1
        except Exception as exc:  # anything else that went wrong while starting: still one clear line
            warn(f"error: startup failed: {type(exc).__name__}: {exc}")
            return 1
        operator = state / "isthmus.yaml"
        config = creds.client_config("operator", nats_url)
        config.dashboard = dashboard  # `isthmus dashboard` reads it
        save_config(operator, config)
        os.environ[CONFIG_ENV] = str(operator)  # the demo and the sidecars it starts use the operator's config
        _print_ready(state, nats_url, f"http://{LOOPBACK}:{etcd_port}", demo, operator, dashboard)
        health_bus = await _watch_health(supervisor, nats_url, creds)
        tasks.append(asyncio.ensure_future(supervisor.run()))
        if demo:
            from examples.bookinfo.demo import run_demo

            demo_task = asyncio.ensure_future(run_demo(nats_url, supervisor, state / "logs", ingress_port=ingress[0],
                                                       ingress_https_port=ingress[1]))
            tasks.append(demo_task)
            await asyncio.wait({demo_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if demo_task.done() and not demo_task.cancelled() and demo_task.exception() is not None:
                warn(f"error: the demo failed: {demo_task.exception()}")
                code = 1
        else:
            await stopper
        return code
    finally:
        say("")
        say("isthmus: stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if health_bus is not None:
            await health_bus.close()
        for proc in reversed(supervisor.processes):
            if proc.is_running:
                say(f"  stopping {proc.name} (pid {proc.pid})")
        supervisor.stop_all()
        say("isthmus: stopped")


async def _watch_health(supervisor: Supervisor, nats_url: str, creds: MeshCredentials) -> Any:
    """A bus connection of our own to probe each service's health subject; returns it (to close)."""
    from runtime.bus import connect

    try:
        bus = await asyncio.wait_for(connect(nats_url, "isthmus-up-health", wait=None,
                                             auth=creds.client_config("operator", nats_url).nats), 10)
    except Exception as exc:
        warn(f"isthmus: services are restarted only when they exit (no bus for health checks: {exc})")
        return None
    for proc in supervisor.processes:
        if proc.name in SERVICES:
            supervisor.watch_health(proc, bus_health_probe(bus, proc.name))
    return bus


async def _start(state: Path, nats_port: int, etcd_port: int, supervisor: Supervisor, creds: MeshCredentials,
                 nats_tls: bool = False) -> str:
    """Start everything under the supervisor and wait until it is ready; returns the NATS URL.
    nats-server runs with the roles' users and the auth callout (isthmus/launch/credentials.py), and
    TLS when `nats_tls`; etcd's authentication is turned on before any service starts."""
    from runtime.bus import connect

    began = time.monotonic()
    tls = None
    if nats_tls:
        ca, cert, key = make_bus_tls(state)
        creds.nats_ca, tls = str(ca), (cert, key)
    nats = supervisor.add(start_nats(state, nats_port, wait=False, authorization=creds.nats_authorization(), tls=tls))
    await nats.wait_ready_async(NATS_TIMEOUT)
    _started(nats, began)
    etcd = supervisor.add(start_etcd(state, etcd_port, etcd_port + 1, wait=False, jwt_keys=creds.etcd_jwt_keys))
    await etcd.wait_ready_async(ETCD_TIMEOUT)
    assert nats.url and etcd.url
    try:
        await enable_auth(etcd.url, creds.etcd_root, ETCD_SERVICE_USER, creds.etcd_service)
    except Exception as exc:
        raise LaunchError(f"cannot enable etcd's authentication at {etcd.url}: {exc} (if {state / 'secrets'} was "
                          f"deleted while {state / 'etcd'} was kept, etcd's users have passwords no longer known: "
                          "move the etcd directory away)") from exc
    _started(etcd, began)
    creds.write_service_configs(nats.url, etcd.url)
    try:
        bus = await asyncio.wait_for(connect(nats.url, "isthmus-up", wait=None,
                                             auth=creds.client_config("operator", nats.url).nats), 10)
    except Exception as exc:
        raise LaunchError(f"cannot connect to nats-server at {nats.url}: {exc}") from exc
    procs: list[ManagedProcess] = [
        supervisor.add(service_process(name, nats.url, etcd.url, state, credentials=creds)) for name in SERVICES
    ]
    try:
        for proc in procs:
            reply = await wait_ready(bus, proc.name, SERVICE_TIMEOUT, process=proc)
            _started(proc, began, f"instance {reply.instance}")
    finally:
        try:
            await asyncio.wait_for(bus.client.close(), 2)
        except Exception:
            pass
    return nats.url


def _started(proc: ManagedProcess, began: float, detail: str = "") -> None:
    where = proc.url or detail
    say(f"  {proc.name:<10} ready   pid {proc.pid:<7} {where:<28} ({time.monotonic() - began:.1f}s)")


def _print_ready(state: Path, nats_url: str, etcd_url: str, demo: bool, operator_config: Path,
                 dashboard: str = "") -> None:
    from isthmus.hints import isthmus, shown

    cli = isthmus()  # `.venv/bin/isthmus` unless PATH finds it; the URL comes from the export below
    say("")
    say("control plane ready")
    say(f"  NATS:  {nats_url}")
    say(f"  etcd:  {etcd_url}")
    say(f"  logs:  {state / 'logs'}/")
    if dashboard:
        say(f"  dashboard: {dashboard}   (Prometheus: {dashboard}metrics, Zipkin API: {dashboard}api/v2/)")
    say("")
    say("Point the CLI and sidecars at it:")
    say(f"  export ISTHMUS_CONFIG={operator_config}")
    say("Run a sidecar beside an app that listens on 127.0.0.1:9081:")
    say(f"  {cli} proxy run --service reviews --service-port 9080 --app-port 9081 "
        "--labels app=reviews,version=v1")
    say("Apply config:")
    examples = Path(__file__).resolve().parent.parent / "examples" / "bookinfo"
    say(f"  {cli} apply -f {shown(examples / 'destination-rule-reviews.yaml')}")
    say("")
    say("Starting the bookinfo demo; Ctrl-C stops everything." if demo else "Ctrl-C stops everything.")

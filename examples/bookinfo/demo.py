"""The bookinfo demo: a frontend and reviews v1/v2/v3, each beside its own sidecar, an ingress gateway in
front of the frontend, an 80/10/10 split applied through the config API, and live traffic with the share
each version gets.

`isthmus up --demo` runs it once the control plane is ready; against a running control plane:

    .venv/bin/python -m examples.bookinfo.demo [--nats nats://127.0.0.1:4222] [--user jason]
        [--ingress-port 8080] [--ingress-https-port 8443]

The first demo on a log directory holds <log-dir>/demo.lock. It starts the four apps and their sidecars and
the ingress gateway `istio-ingressgateway` (ingress.py: Gateway port 80 on 127.0.0.1:8080, 443 on 8443), makes
a certificate for bookinfo.example.com and stores it with `isthmus create secret tls` (ingress_tls.py), starts the mesh
config from its own (examples/bookinfo/reset.py: it deletes what an earlier walk-through left for its hosts
and its gateway, and says so), applies the DestinationRule, the 80/10/10 VirtualService, the Telemetry and
bookinfo-gateway.yaml (a Gateway and the VirtualService bound to it, as Istio's bookinfo), and drives
traffic. A demo started while another holds the lock (or with --client) joins as a client only: its own
frontend and sidecar (logs demo-<user or client>-*.log), no config change, traffic with `end-user: USER`
when given, so a route by header shows in its counts while the first demo's stay as they were.

Every app, sidecar and the gateway is a process of its own (logs in <log-dir>/demo-*.log), started and
stopped by the same Supervisor as the control plane. Half the traffic goes straight to the frontend app (a
client on its host), half enters through the ingress gateway, which routes it to the frontend's sidecar over
mutual TLS; the frontend asks reviews through its sidecar's outbound port, which picks the version by the
mesh config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import IO

from examples.bookinfo import reset
from examples.bookinfo import ingress_tls
from examples.bookinfo.ingress import DEFAULT_HTTPS_PORT as DEFAULT_INGRESS_HTTPS_PORT
from examples.bookinfo.ingress import DEFAULT_PORT as DEFAULT_INGRESS_PORT
from examples.bookinfo.ingress import check_ports, start_ingress, wait_ingress
from examples.bookinfo.mtls import MtlsWatch
from examples.bookinfo.traffic import Out, _print, drive_traffic, wait_first_answer
from examples.bookinfo.workloads import Workload, start_workloads, wait_converged, wait_sidecars_ready
from isthmus import hints
from isthmus.launch import LaunchError, Supervisor
from isthmus.lockfile import hold, holder
from runtime.settings import DEFAULT_NATS_URL

HERE = Path(__file__).resolve().parent
DEFAULT_LOG_DIR = ".isthmus/logs"
MAX_CLIENTS = 20  # client demos at once per user name (each takes a lock of its own)


def shown_path(path: Path) -> str:
    """`path` as a user types it from the project root (the README's commands run there)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


async def apply_demo_config(nats_url: str, out: Out = _print) -> int:
    """Start from the demo's own config: delete what an earlier run left for its hosts and gateway (reset.py),
    then apply reset.CONFIG (the DestinationRule, the 80/10/10 VirtualService, the Telemetry, the Gateway and
    its VirtualService) exactly as `isthmus apply -f` does; print what was reset. Returns the etcd revision that holds the result."""
    import click

    from isthmus.cli import apply_text, connect_cli, join_documents, print_apply_reply, read_manifests

    text = join_documents(text for _, text in read_manifests([str(p) for p in reset.CONFIG]))
    bus = await connect_cli(nats_url)
    try:
        try:
            deleted, deleted_at = await reset.reset(bus)
        except RuntimeError as exc:
            raise LaunchError(str(exc)) from exc
        reply = await apply_text(bus, text)
    finally:
        await bus.client.close()
    out("$ isthmus apply " + " ".join(f"-f {shown_path(p)}" for p in reset.CONFIG))
    if not print_apply_reply(reply, echo=lambda line, err=False: click.echo(f"  {line}", err=err)):
        raise LaunchError("the control plane rejected the demo config")
    changes = deleted + reset.replaced(reply)
    if changes:
        out("started from the demo's own config; reset:")
        for line in changes:
            out(f"  {line}")
    else:
        out("started from the demo's own config (nothing to reset)")
    return max(reply.revision, deleted_at)


def client_lock(log_dir: Path, user: str | None) -> tuple[str, IO[str]]:
    """A name of its own for a client demo (`jason-`, `jason2-`, `client-`...) and the lock that keeps it."""
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in (user or "client"))[:40] or "client"
    for n in range(1, MAX_CLIENTS + 1):
        name = base if n == 1 else f"{base}{n}"
        lock = hold(log_dir / f"demo-{name}.lock")
        if lock is not None:
            return f"{name}-", lock
    raise LaunchError(f"{MAX_CLIENTS} client demos as {base} are running already")


# --------------------------------------------------------------------------------------------- run


def dashboard_url() -> str:
    """Where the telemetry service's dashboard is, as `isthmus dashboard` finds it: the client config `isthmus
    up` wrote (ISTHMUS_CONFIG, ./.isthmus/isthmus.yaml), else ISTHMUS_DASHBOARD_URL, else its default."""
    from isthmus.commands.dashboard import DEFAULT_URL
    from runtime.clientconfig import ConfigFileError, load_optional

    try:
        config = load_optional()
    except ConfigFileError:
        config = None
    return (config.dashboard if config else "") or os.environ.get("ISTHMUS_DASHBOARD_URL") or DEFAULT_URL


def dashboard_hint() -> str:
    return (f"  dashboard: {dashboard_url()}  (service graph with the split and mTLS, traces, access logs; "
            f"`{hints.isthmus()} dashboard` opens it)")


def ingress_hint(gateway_url: str) -> str:
    return (f"  ingress gateway: curl -s {gateway_url}  (from outside the mesh: istio-ingressgateway -> frontend, "
            "examples/bookinfo/bookinfo-gateway.yaml)")


def https_hint(port: int, ca: Path) -> str:
    return (f"  ingress gateway, HTTPS: curl -s --cacert {hints.shown(ca)} --resolve {ingress_tls.HOST}:{port}:127.0.0.1 "
            f"https://{ingress_tls.HOST}:{port}/productpage")


def _hints(nats_url: str, url: str, log_dir: Path, gateway_url: str | None = None,
           https: str | None = None) -> list[str]:
    cli = hints.isthmus(nats_url)
    demo = f"{hints.program('python')} -m examples.bookinfo.demo"
    if nats_url != DEFAULT_NATS_URL:
        demo += f" --nats {nats_url}"
    if log_dir.resolve() != Path(DEFAULT_LOG_DIR).resolve():
        demo += f" --log-dir {hints.shown(log_dir)}"
    return [dashboard_hint(),
            *([ingress_hint(gateway_url)] if gateway_url else []),
            *([https] if https else []),
            f"  try: curl -s {url}",
            f"  try: {cli} apply -f {hints.shown(HERE / 'virtual-service-reviews-v1.yaml')}",
            f"  as user jason, beside this one: {demo} --user jason"]


async def run_demo(nats_url: str, supervisor: Supervisor, log_dir: Path, *, rate: float = 50.0,
                   user: str | None = None, client: bool = False, ingress_port: int = DEFAULT_INGRESS_PORT,
                   ingress_https_port: int = DEFAULT_INGRESS_HTTPS_PORT, out: Out = _print) -> None:
    """Start the workloads and the ingress gateway (Gateway port 80 on 127.0.0.1:`ingress_port`, 443 on
    `ingress_https_port`; LaunchError naming the flag when one is taken) under `supervisor`, store the demo's
    certificate for it, start the mesh config from the demo's own, then drive traffic until cancelled. With another demo on `log_dir` running (or `client`), join as a client
    only (no gateway). The caller stops the supervisor's processes."""
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = None if client else hold(log_dir / "demo.lock")
    try:
        if lock is None:
            await _run_client(nats_url, supervisor, log_dir, rate, user, out)
            return
        problem = check_ports(ingress_port, ingress_https_port)
        if problem:  # before anything starts
            raise LaunchError(problem)
        out("")
        out("bookinfo demo: starting frontend and reviews v1, v2, v3, each with a sidecar, and an ingress gateway")
        workloads = start_workloads(nats_url, supervisor, log_dir)
        ingress = start_ingress(nats_url, supervisor, log_dir, ingress_port, ingress_https_port)
        for w in workloads:
            out(f"  {w.service + '-' + w.version:<12} app 127.0.0.1:{w.app_port:<6} sidecar inbound :{w.inbound_port:<6} "
                f"outbound :{w.outbound_port:<6} admin :{w.admin_port}")
        out(f"  istio-ingressgateway (istio-system): Gateway port 80 on 127.0.0.1:{ingress.port}, 443 on "
            f"127.0.0.1:{ingress.https_port}, admin :{ingress.admin_port}")
        await wait_sidecars_ready(workloads)
        await wait_ingress(ingress)
        out("  sidecars and gateway ready")
        ca, cert, key = ingress_tls.make_certs(log_dir.parent / "demo-certs")
        out(f"$ isthmus create secret tls {ingress_tls.SECRET} -n {ingress_tls.NAMESPACE} --cert {hints.shown(cert)} "
            f"--key {hints.shown(key)}")
        out(f"  {await ingress_tls.create_secret(nats_url, cert, key)}  (signed by {hints.shown(ca)}, the demo's CA)")
        revision = await apply_demo_config(nats_url, out)
        await wait_converged(workloads, revision)  # no request runs under what was just reset
        await wait_ingress(ingress, revision)
        url = f"http://127.0.0.1:{workloads[0].app_port}/"
        await wait_first_answer(url)
        await wait_first_answer(ingress.url)
        await ingress_tls.wait_https(ingress.https_port, ca)
        out("")
        out(f"traffic: {rate:g} req/s to the frontend" + (f" as end-user {user}" if user else "")
            + f", half at its app {url}, half through the ingress gateway at {ingress.url}")
        for line in _hints(nats_url, url, log_dir, ingress.url, https_hint(ingress.https_port, ca)):
            out(line)
        out("")
        await _traffic_with_mtls(workloads, [url, ingress.url], rate, user, out)
    finally:
        if lock is not None:
            lock.close()


async def _traffic_with_mtls(workloads: list[Workload], urls: list[str], rate: float, user: str | None,
                            out: Out) -> None:
    """drive_traffic to `urls` in turn, each status line ending with what the sidecars' admin ports say of mTLS
    (mtls.py)."""
    watch = MtlsWatch(workloads)
    watcher = asyncio.ensure_future(watch.run())
    try:
        await drive_traffic(urls, rate=rate, headers={"end-user": user} if user else {}, out=out, status=watch.line)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def _run_client(nats_url: str, supervisor: Supervisor, log_dir: Path, rate: float, user: str | None,
                      out: Out) -> None:
    """A frontend and its sidecar of our own, as one more client of reviews: the config is not touched."""
    prefix, lock = client_lock(log_dir, user)
    try:
        out("")
        out(f"bookinfo demo: another demo runs on {hints.shown(log_dir)} (pid {holder(log_dir / 'demo.lock')}): "
            "joining the mesh as a client only; its config is left as it is")
        [frontend] = start_workloads(nats_url, supervisor, log_dir, [("frontend", "v1")], prefix)
        out(f"  {prefix}frontend app 127.0.0.1:{frontend.app_port}, sidecar outbound :{frontend.outbound_port}, "
            f"logs {hints.shown(log_dir)}/demo-{prefix}*.log")
        await wait_sidecars_ready([frontend])
        url = f"http://127.0.0.1:{frontend.app_port}/"
        out("")
        out(f"traffic: {rate:g} req/s to the frontend at {url}" + (f" as end-user {user}" if user else ""))
        out(dashboard_hint())
        out("")
        await _traffic_with_mtls([frontend], [url], rate, user, out)
    finally:
        lock.close()


async def _standalone(args: argparse.Namespace) -> int:
    supervisor = Supervisor(report=lambda line: print(f"demo: {line}", file=sys.stderr, flush=True))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    demo = asyncio.ensure_future(run_demo(args.nats, supervisor, Path(args.log_dir).resolve(), rate=args.rate,
                                          user=args.user, client=args.client, ingress_port=args.ingress_port,
                                          ingress_https_port=args.ingress_https_port))
    watcher = asyncio.ensure_future(supervisor.run())
    stopper = asyncio.ensure_future(stop.wait())
    code = 0
    try:
        await asyncio.wait({demo, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if demo.done() and not demo.cancelled() and demo.exception() is not None:
            print(f"error: {demo.exception()}", file=sys.stderr)
            code = 1
    finally:
        for task in (demo, watcher, stopper):
            task.cancel()
        await asyncio.gather(demo, watcher, stopper, return_exceptions=True)
        print("\ndemo: stopping", flush=True)
        supervisor.stop_all()
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.bookinfo.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", default=os.environ.get("ISTHMUS_NATS_URL", DEFAULT_NATS_URL),
                        help="the bus (env ISTHMUS_NATS_URL)")
    parser.add_argument("--log-dir", default=DEFAULT_LOG_DIR,
                        help=f"where the apps and sidecars log, and where demos find each other (default {DEFAULT_LOG_DIR})")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--user", help="send `end-user: USER` (try jason with virtual-service-reviews-jason-v2.yaml)")
    parser.add_argument("--ingress-port", type=int, default=DEFAULT_INGRESS_PORT,
                        help="where the ingress gateway serves its Gateway port 80, on 127.0.0.1 (default "
                             f"{DEFAULT_INGRESS_PORT}; a client demo starts no gateway)")
    parser.add_argument("--ingress-https-port", type=int, default=DEFAULT_INGRESS_HTTPS_PORT,
                        help=f"... and its Gateway port 443 (default {DEFAULT_INGRESS_HTTPS_PORT})")
    parser.add_argument("--client", action="store_true",
                        help="join as a client only (what a demo does anyway while another one runs)")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 10_000:  # also refuses nan; inf would make the pacing sleep 0 forever
        parser.error(f"--rate {args.rate}: give 0 < requests per second <= 10000")
    for flag, port in (("--ingress-port", args.ingress_port), ("--ingress-https-port", args.ingress_https_port)):
        if not 1 <= port <= 65535:
            parser.error(f"{flag} {port}: give a port 1-65535")
    sys.exit(asyncio.run(_standalone(args)))


if __name__ == "__main__":
    main()

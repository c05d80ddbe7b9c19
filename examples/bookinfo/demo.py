"""The bookinfo demo: a frontend and reviews v1/v2/v3, each beside its own sidecar, an 80/10/10 split
applied through the config API, and live traffic with the share each version gets.

`isthmus up --demo` runs it once the control plane is ready; against a running control plane:

    python -m examples.bookinfo.demo --nats nats://127.0.0.1:4222

Every app and sidecar is a process of its own (logs in <log-dir>/demo-*.log), started and stopped by
the same Supervisor as the control plane. The traffic goes to the frontend app, which asks reviews
through its sidecar's outbound port; the sidecar picks the version by the mesh config. Apply another
virtual-service-reviews-*.yaml with `isthmus apply -f` while it runs and watch the shares move.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from examples.bookinfo.app import HttpClient
from isthmus.launch import LaunchError, ManagedProcess, Supervisor, free_port, project_env

HERE = Path(__file__).resolve().parent
CONFIG = (HERE / "destination-rule-reviews.yaml", HERE / "virtual-service-reviews-80-10-10.yaml")
VERSIONS = ("v1", "v2", "v3")
SERVICE_PORT = 9080
READY_TIMEOUT = 60.0

Out = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


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
            "--service", service, "--namespace", "default", "--service-port", str(SERVICE_PORT),
            "--app-port", str(app_port), "--labels", f"app={service},version={version}",
            "--inbound-port", str(inbound), "--outbound-port", str(outbound), "--admin-port", str(admin),
            "--access-log", "-"]  # into the sidecar's log file: flags such as UO or FI show there


def start_workloads(nats_url: str, supervisor: Supervisor, log_dir: Path) -> list[Workload]:
    """The four apps, then their four sidecars (so stopping in reverse takes the sidecars down first)."""
    env = project_env()
    plans = [("frontend", "v1"), *(("reviews", v) for v in VERSIONS)]
    ports = {plan: (free_port(), free_port(), free_port(), free_port()) for plan in plans}
    apps: dict[tuple[str, str], ManagedProcess] = {}
    for service, version in plans:
        app_port, _, outbound, _ = ports[(service, version)]
        argv = app_argv("frontend" if service == "frontend" else "reviews", version, app_port,
                        outbound if service == "frontend" else None)
        apps[(service, version)] = supervisor.add(ManagedProcess(
            f"{service}-{version}", argv, log_path=log_dir / f"demo-{service}-{version}.log", env=env))
    workloads = []
    for service, version in plans:
        app_port, inbound, outbound, admin = ports[(service, version)]
        sidecar = supervisor.add(ManagedProcess(
            f"sidecar-{service}-{version}",
            sidecar_argv(nats_url, service, version, app_port, inbound, outbound, admin),
            log_path=log_dir / f"demo-sidecar-{service}-{version}.log", env=env))
        workloads.append(Workload(service, version, apps[(service, version)], sidecar, app_port, inbound,
                                  outbound, admin))
    return workloads


async def wait_sidecars_ready(workloads: list[Workload], timeout: float = READY_TIMEOUT) -> None:
    """Poll every sidecar's admin /ready until it answers 200 (it has config from pilot)."""
    client = HttpClient(timeout=1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        for w in workloads:
            while True:
                for proc in (w.app, w.sidecar):
                    if not proc.is_running:
                        raise proc._not_ready(f"exited with code {proc.returncode}")
                try:
                    if (await client.get(f"http://127.0.0.1:{w.admin_port}/ready")).status == 200:
                        break
                except (OSError, asyncio.TimeoutError):
                    pass
                if loop.time() > deadline:
                    raise w.sidecar._not_ready(f"not ready after {timeout:g}s")
                await asyncio.sleep(0.1)
    finally:
        await client.close()


async def apply_demo_config(nats_url: str, out: Out = _print) -> None:
    """Apply the DestinationRule and the 80/10/10 VirtualService, exactly as `isthmus apply -f` does."""
    import click

    from isthmus.cli import apply_text, connect_cli, join_documents, print_apply_reply, read_manifests

    text = join_documents(text for _, text in read_manifests([str(p) for p in CONFIG]))
    bus = await connect_cli(nats_url)
    try:
        reply = await apply_text(bus, text)
    finally:
        await bus.client.close()
    out(f"$ isthmus apply -f {CONFIG[0].name} -f {CONFIG[1].name}")
    if not print_apply_reply(reply, echo=lambda line, err=False: click.echo(f"  {line}", err=err)):
        raise LaunchError("the control plane rejected the demo config")


# ------------------------------------------------------------------------------------------ traffic


@dataclass
class Stats:
    window: int = 200
    recent: collections.deque[str] = field(default_factory=collections.deque)
    totals: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: int = 0

    def record(self, outcome: str) -> None:
        self.recent.append(outcome)
        if len(self.recent) > self.window:
            self.recent.popleft()
        self.totals[outcome] += 1
        self.sent += 1

    def line(self, elapsed: float, rate: float) -> str:
        recent = collections.Counter(self.recent)
        n = len(self.recent) or 1
        shares = "  ".join(f"{v} {100 * recent[v] / n:5.1f}%" for v in VERSIONS)
        errors_recent = sum(c for k, c in recent.items() if k not in VERSIONS)
        totals = " ".join(f"{v}={self.totals[v]}" for v in VERSIONS)
        errors = sum(c for k, c in self.totals.items() if k not in VERSIONS)
        line = (f"[{elapsed:5.0f}s] last {len(self.recent):>3}: {shares}  err {100 * errors_recent / n:5.1f}%"
                f"  | total {self.sent} ({totals} errors={errors})  {rate:5.1f} req/s")
        kinds = [f"{k} x{c}" for k, c in recent.most_common() if k not in VERSIONS]
        return line + (f"  [{', '.join(kinds[:3])}]" if kinds else "")


async def one_request(client: HttpClient, url: str, headers: dict[str, str]) -> str:
    """The reviews version the frontend got, or a short name for what went wrong."""
    try:
        response = await client.get(url, headers)
    except Exception as exc:
        return f"frontend {type(exc).__name__}"
    if response.status != 200:
        return f"frontend {response.status}"
    try:
        reviews = response.json().get("reviews") or {}
    except ValueError:
        return "frontend bad json"
    if reviews.get("status") == 200 and reviews.get("version"):
        return str(reviews["version"])
    return f"reviews {reviews.get('status', '?')}"


async def drive_traffic(url: str, *, rate: float = 50.0, concurrency: int = 8, window: int = 200,
                        headers: dict[str, str] | None = None, out: Out = _print) -> None:
    """GET url about `rate` times a second with at most `concurrency` in flight, forever (cancel to
    stop); prints the share of each reviews version once a second."""
    client = HttpClient(timeout=5.0)
    stats = Stats(window=window)
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    async def send() -> None:
        try:
            stats.record(await one_request(client, url, headers or {}))
        finally:
            slots.release()

    async def report() -> None:
        began = last_time = loop.time()
        last_sent = 0
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            out(stats.line(now - began, (stats.sent - last_sent) / max(now - last_time, 1e-6)))
            last_time, last_sent = now, stats.sent

    reporter = asyncio.ensure_future(report())
    try:
        tick = loop.time()
        while True:
            await slots.acquire()
            task = asyncio.ensure_future(send())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            tick = max(tick + 1.0 / rate, loop.time() - 1.0)  # after a stall, do not burst to catch up
            await asyncio.sleep(max(0.0, tick - loop.time()))
    finally:
        reporter.cancel()
        for task in in_flight:
            task.cancel()
        await asyncio.gather(reporter, *in_flight, return_exceptions=True)
        await client.close()


async def wait_first_answer(url: str, timeout: float = 30.0) -> str:
    """Ask until reviews answers through the mesh (pilot's pushes may take a moment to land)."""
    client = HttpClient(timeout=2.0)
    deadline = time.monotonic() + timeout
    outcome = ""
    try:
        while time.monotonic() < deadline:
            outcome = await one_request(client, url, {})
            if outcome in VERSIONS:
                return outcome
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    raise LaunchError(f"no answer from reviews through the mesh within {timeout:g}s (last: {outcome})")


# --------------------------------------------------------------------------------------------- run


async def run_demo(nats_url: str, supervisor: Supervisor, log_dir: Path, *, rate: float = 50.0,
                   user: str | None = None, out: Out = _print) -> None:
    """Start the workloads under `supervisor`, apply the demo config, then drive traffic until cancelled.
    The caller stops the supervisor's processes."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out("")
    out("bookinfo demo: starting frontend and reviews v1, v2, v3, each with a sidecar")
    workloads = start_workloads(nats_url, supervisor, log_dir)
    for w in workloads:
        out(f"  {w.service + '-' + w.version:<12} app 127.0.0.1:{w.app_port:<6} sidecar inbound :{w.inbound_port:<6} "
            f"outbound :{w.outbound_port:<6} admin :{w.admin_port}")
    await wait_sidecars_ready(workloads)
    out("  sidecars ready")
    await apply_demo_config(nats_url, out)
    frontend = workloads[0]
    url = f"http://127.0.0.1:{frontend.app_port}/"
    await wait_first_answer(url)
    headers = {"end-user": user} if user else {}
    out("")
    out(f"traffic: {rate:g} req/s to the frontend at {url}" + (f" as end-user {user}" if user else ""))
    out(f"  try: curl -s {url}")
    out(f"  try: isthmus --nats {nats_url} apply -f {HERE / 'virtual-service-reviews-v1.yaml'}")
    out("")
    await drive_traffic(url, rate=rate, headers=headers, out=out)


async def _standalone(args: argparse.Namespace) -> int:
    supervisor = Supervisor(report=lambda line: print(f"demo: {line}", file=sys.stderr, flush=True))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    demo = asyncio.ensure_future(run_demo(args.nats, supervisor, Path(args.log_dir).resolve(), rate=args.rate,
                                          user=args.user))
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
    import os

    parser = argparse.ArgumentParser(prog="python -m examples.bookinfo.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats", default=os.environ.get("ISTHMUS_NATS_URL", "nats://127.0.0.1:4222"),
                        help="the bus (env ISTHMUS_NATS_URL)")
    parser.add_argument("--log-dir", default=".isthmus/logs", help="where the apps and sidecars log")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--user", help="send `end-user: USER` (try jason with virtual-service-reviews-jason-v2.yaml)")
    args = parser.parse_args(argv)
    sys.exit(asyncio.run(_standalone(args)))


if __name__ == "__main__":
    main()

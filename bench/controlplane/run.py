"""Entry point of the control-plane benchmark: run(quick, results_dir, smoke) -> dict.

Per N it starts its own control plane on free loopback ports, locked down as `isthmus up` runs it
(isthmus.launch.secure: nats-server with the roles' users and the auth callout, etcd with --unsafe-no-fsync
and its authentication on; the auth, registry and pilot services with their own client configs), issues
one proxy credential per simulated proxy (lockdown.py, before the timed part), starts W worker processes
of simulated proxies (simproxy.py) that connect with them, runs the scenarios (driver.py), measures the
compute cost of each step in-process (costs.py), and stops everything it started, whatever happens.
Every wait is bounded.

    quick   N = 100 and 1,000; 5 config changes, 2 endpoint add/expire cycles   (about a minute)
    full    N = 100, 1,000 and 5,000; 10 changes, 5 cycles; py-spy on pilot     (a few minutes)
    smoke   N = 20; 1 change, 1 cycle: seconds, for CI; asserts nothing about speed

Targets (informational, PASS/MISS): p99 config convergence <= 100 ms at 1,000 proxies, <= 1 s at 5,000.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.controlplane import lockdown, mesh
from bench.controlplane.driver import EXPIRY_TTL, Driver, Options, Plane
from bench.controlplane.procstat import ProcSampler
from bench.controlplane.procstat import read as proc_cpu
from bench.controlplane.pyspy import available as pyspy_available
from bench.controlplane.simproxy import subject
from bench.controlplane.stats import fmt_ms, histogram_line, table
from isthmus.launch import ManagedProcess, project_env, service_process, wait_ready
from isthmus.launch.credentials import ETCD_SERVICE_USER
from isthmus.launch.secure import start_secure
from runtime import bus as busmod
from runtime.clientconfig import NatsClient

TARGETS_P99_MS = {1000: 100.0, 5000: 1000.0}
PROCESSES = ("pilot", "registry", "auth", "nats", "etcd", "workers")  # the resources table's columns
LEASE_TTL = 180  # s, simulated proxies' registrations
HEARTBEAT = 60.0  # s, simulated proxies' heartbeat (and app probe) interval: N/60 heartbeats/s
CONN = os.environ.get("ISTHMUS_BENCH_CONN", "proxy")  # proxy: one NATS connection per proxy; shared: per worker


def workers_for(n: int) -> int:
    return 2 if n <= 100 else 4


def split(n: int, w: int) -> list[int]:
    return [n // w + (1 if i < n % w else 0) for i in range(w)]


async def _wait_services(bus: busmod.Bus, registry: ManagedProcess, pilot: ManagedProcess,
                         auth: ManagedProcess | None = None) -> None:
    if auth is not None:  # every proxy connection is asked about on its callout subject
        await wait_ready(bus, "auth", 30, process=auth)
    deadline = time.monotonic() + 30
    for name, proc in (("registry", registry), ("pilot", pilot)):
        while True:  # ready is not enough: only leaders answer snapshots, publish pushes and registry events
            reply = await wait_ready(bus, name, 30, process=proc)
            if reply.leader:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never became leader")
            await asyncio.sleep(0.1)


async def _prepare(nats_url: str, operator: NatsClient, services: dict[str, ManagedProcess],
                   count: int) -> tuple[list[NatsClient], dict[str, Any]]:
    """Wait for auth, registry and pilot; then `count` proxy credentials, and what issuing them cost."""
    bus = await busmod.connect(nats_url, "bench-wait", wait=30, auth=operator)
    try:
        await _wait_services(bus, services["registry"], services["pilot"], services["auth"])
    finally:
        await bus.close()
    cost: dict[str, Any] = {"anonymous_refused": await lockdown.anonymous_refused(nats_url)}
    before = proc_cpu(services["auth"].pid or 0)
    issued, seconds = await lockdown.issue(nats_url, operator, count)
    after = proc_cpu(services["auth"].pid or 0)
    cost.update(credentials=count, seconds=round(seconds, 2), per_s=round(count / max(seconds, 1e-9), 1))
    if before and after:
        cost["auth_cpu_ms_each"] = round(1e3 * (after[0] - before[0]) / count, 2)
    return issued, cost


def bus_auth(result: dict[str, Any], n: int, issue: dict[str, Any]) -> dict[str, Any]:
    """What the lockdown costs: issuing the credentials (before the timed part), and at cold start N proxies
    connecting at once, each through the auth callout: time until connected, the auth service's CPU."""
    cold = result.get("cold_start") or {}
    auth = (cold.get("resources") or {}).get("auth") or {}
    out: dict[str, Any] = {"issue": issue, "connected": cold.get("connected") or {}, "auth_cold_start": auth}
    if auth:
        out["auth_cpu_ms_per_connection"] = round(1e3 * auth["cpu_s"] / max(1, n), 2)
    return out


async def _wait_workers(control: NatsClient, workers: list[ManagedProcess]) -> None:
    bus = await busmod.connect(control.url, "bench-wait", wait=30, auth=control)
    try:
        for w, proc in enumerate(workers):
            for _ in range(300):
                if not proc.is_running:
                    raise RuntimeError(f"worker {w} exited:\n{proc.log_tail()}")
                try:
                    await bus.request(subject(w, "ping"), b"", timeout=0.2)
                    break
                except busmod.BusError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"worker {w} never answered:\n{proc.log_tail()}")
    finally:
        await bus.close()


def run_size(n: int, opts: Options, state: Path) -> dict[str, Any]:
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    procs: list[ManagedProcess] = []
    sampler: ProcSampler | None = None
    counts = split(n, opts.workers)
    t_start = time.monotonic()
    try:
        secure = start_secure(state, unsafe_no_fsync=True)  # as `isthmus up`: users, callout, etcd auth
        nats, etcd, creds = secure.nats, secure.etcd, secure.creds
        procs += [nats, etcd]
        control_bus, control = lockdown.start_control_bus(state)
        procs.append(control_bus)
        nats_url, etcd_url = nats.url or "", etcd.url or ""
        operator = creds.client_config("operator", nats_url).nats
        services = {name: service_process(name, nats_url, etcd_url, state, credentials=creds).start()
                    for name in ("auth", "registry", "pilot")}
        procs += services.values()
        auth, registry, pilot = services["auth"], services["registry"], services["pilot"]
        # one proxy credential per simulated proxy and one for the driver, before anything is timed
        issued, issue = asyncio.run(_prepare(nats_url, operator, services, n + 1))
        workers = []
        first = 0
        for w, count in enumerate(counts):
            share = lockdown.write_creds(creds.secrets_dir / f"bench-worker-{w}.json", issued[first:first + count])
            argv = [sys.executable, "-m", "bench.controlplane.simproxy", "--nats", nats_url, "--control", control.url,
                    "--creds", str(share), "--worker", str(w), "--first", str(first), "--count", str(count),
                    "--total", str(n), "--conn", opts.conn, "--ttl", str(opts.lease_ttl),
                    "--heartbeat", str(opts.heartbeat)]
            first += count
            proc = ManagedProcess(f"worker-{w}", argv, log_path=state / "logs" / f"worker-{w}.log",
                                  env=project_env({lockdown.CONTROL_PASSWORD_ENV: control.password}))
            workers.append(proc.start())
            procs.append(proc)
        asyncio.run(_wait_workers(control, workers))
        pids = {"pilot": pilot.pid, "registry": registry.pid, "auth": auth.pid, "nats": nats.pid, "etcd": etcd.pid}
        pids.update({f"worker-{w}": p.pid for w, p in enumerate(workers)})
        sampler = ProcSampler({k: v for k, v in pids.items() if v}).start()
        async def restart() -> dict[str, int]:
            """Restart registry and pilot (called from the driver's loop, in this same main thread)."""
            for proc in (pilot, registry):
                proc.stop(5)
            registry.start()
            pilot.start()
            bus = await busmod.connect(nats_url, "bench-restart", wait=30, auth=operator)
            try:
                await _wait_services(bus, registry, pilot)
            finally:
                await bus.close()
            return {"pilot": pilot.pid or 0, "registry": registry.pid or 0}

        host, port = etcd_url.rsplit("//", 1)[-1].split(":")
        plane = Plane(nats_url=nats_url, etcd_host_port=(host, int(port)), pilot_pid=pilot.pid or 0,
                      pilot_log=state / "logs" / "pilot.log", counts=counts, restart=restart, operator=operator,
                      proxy=issued[n], control=control, etcd_auth=(ETCD_SERVICE_USER, creds.etcd_service))
        result = asyncio.run(Driver(opts, plane, sampler).run())
        result["bus_auth"] = bus_auth(result, n, issue)
        result["pids"] = sorted(p.pid for p in procs if p.pid)  # all stopped by the time run() returns
        result["services"] = mesh.service_count(n)
        result["label"] = opts.label
        result["slow_consumers"] = _occurrences(state / "logs" / "nats.log", "Slow Consumer")
        result["pilot_warnings"] = _occurrences(state / "logs" / "pilot.log", '"level": "warning"')
    finally:
        if sampler is not None:
            sampler.stop()
        for proc in reversed(procs):
            proc.stop(5)
        shutil.rmtree(state / "etcd", ignore_errors=True)  # keep the logs, not the data
        for secret in ("secrets", "nats", "bench-control/nats"):  # nor the credentials of a plane that is gone
            shutil.rmtree(state / secret, ignore_errors=True)
        (state / "isthmus.yaml").unlink(missing_ok=True)
    # compute costs on an idle machine, in a fresh process (this one's heap would skew GC pauses)
    result["costs"] = measure_costs(n) if "config" in result else {}
    print(f"  [{opts.label or n} proxies ({opts.conn} connections): {time.monotonic() - t_start:.1f}s]", flush=True)
    return result


def measure_costs(n: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.controlplane.costs", str(n)]
    try:
        done = subprocess.run(argv, env=project_env(), capture_output=True, text=True, timeout=120, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _occurrences(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def plan(quick: bool, smoke: bool) -> tuple[list[tuple[str, int, str]], int, int, bool]:
    """(runs as (label, N, connection mode), config changes, endpoint cycles, py-spy) for a mode."""
    if smoke:
        return [("20", 20, CONN)], 1, 1, False
    if quick:
        return [("100", 100, CONN), ("1000", 1000, CONN)], 5, 2, False
    runs = [("100", 100, CONN), ("1000", 1000, CONN)]
    if CONN == "proxy":  # the same N with one connection per worker: how much the simulation's connections cost
        runs.append(("1000-shared", 1000, "shared"))
    runs.append(("5000", 5000, CONN))
    return runs, 10, 5, bool(pyspy_available())


def run(quick: bool, results_dir: Path, smoke: bool = False) -> dict[str, Any]:
    """Run the control-plane benchmark; print tables; return a JSON-able dict of figures.

    Everything it starts (nats-server, etcd, registry, pilot, worker processes) is stopped before it
    returns, also on error. Results and logs go to results_dir/controlplane/."""
    results_dir = Path(results_dir)
    out_dir = results_dir / "controlplane"
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, applies, cycles, profile = plan(quick, smoke)
    mode = "smoke" if smoke else "quick" if quick else "full"
    report: dict[str, Any] = {
        "mode": mode,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "method": METHOD,
        "runs": {},
        "targets_p99_ms": {str(k): v for k, v in TARGETS_P99_MS.items()},
    }
    print(f"control plane benchmark ({mode}): {', '.join(r[0] for r in runs)} proxies; {os.cpu_count()} cpus; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    t_begin = time.monotonic()
    for label, n, conn in runs:
        opts = Options(n=n, workers=2 if smoke else workers_for(n), applies=applies,
                       endpoint_cycles=cycles if n <= 1000 else min(cycles, 3),
                       pause=0.3 if n <= 1000 else 0.8, cold_timeout=20 + n * 0.001,
                       change_timeout=10 + n * 0.004, profile=profile, results_dir=out_dir, lease_ttl=LEASE_TTL,
                       heartbeat=HEARTBEAT, conn=conn, label=label)
        try:
            report["runs"][label] = run_size(n, opts, out_dir / f"n{label}")
        except Exception as exc:  # one size failing must not lose the others
            report["runs"][label] = {"n": n, "conn": conn, "error": f"{type(exc).__name__}: {exc}"}
            print(f"  {label}: failed: {exc}", flush=True)
    report["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    report["verdicts"] = verdicts(report)
    print(render(report), flush=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str))
    return report


METHOD = {
    "clock": "time.monotonic (CLOCK_MONOTONIC, one system-wide clock on a Linux host): times taken in the "
             "worker processes and in the driver compare directly",
    "config_convergence": "from the apply request (driver) to the proxy's XdsClient._apply returning (ConfigState "
                          "applied, ACK published) with its route for svc-0 at the new etcd revision "
                          "(Istio's pilot_proxy_convergence_time, but end to end: it includes validation, the etcd "
                          "write, pilot's watch, debounce and compile)",
    "endpoint_add": "from the register request to the proxy's cluster for svc-0 holding the endpoint",
    "endpoint_expiry": f"lease TTL {EXPIRY_TTL}s, no heartbeat; from the moment an etcd watch of the driver (a "
                       "watcher like pilot's) sees the key deleted to the proxy's cluster no longer holding it",
    "registration": "N workloads register at once through the registry before any proxy runs; nobody but the "
                    "driver receives the pushes this causes, the fan-out volume is computed for N proxies; then "
                    "up to 2,000 heartbeats at once measure the registry's heartbeat capacity",
    "cold_start": "all N proxies start at once (connect, snapshot request, registration of their workload, "
                  "already registered with the same content, so it pushes nothing); synced = XdsClient.synced. "
                  "If not all sync in time: proxies stopped, registry and pilot restarted, proxies started "
                  "again in waves (ramped)",
    "connections": "one NATS connection per simulated proxy (runs marked 'shared': one per worker process, "
                   "one subscription per proxy)",
    "lockdown": "the plane runs locked down as `isthmus up` runs it (isthmus.launch.secure): nats-server with the "
                "roles' users and the auth callout, etcd's authentication on, auth/registry/pilot with their own "
                "client configs. Before the timed part the operator issues N+1 proxy credentials (namespace bench, "
                "service account default) on isthmus.bus.creds.issue; each simulated proxy connects with its own, "
                "so every connection is decided by the auth service's callout (a shared connection: one per "
                "worker). connect = from the start command to the proxy's NATS connection being up (the callout "
                "included); auth CPU per connection = the auth service's CPU during the cold start / N. The "
                "harness's own commands to the workers go over a separate nats-server",
    "heartbeats": f"lease TTL {LEASE_TTL}s, heartbeat every {HEARTBEAT:g}s: N/{HEARTBEAT:g} heartbeats/s (a real "
                  "proxy: TTL 5s, every 1s)",
    "app_probe": "answers healthy without connecting (loop lag in a worker of 1,000 proxies would make probes "
                 "time out and flap health)",
    "decoded_payloads": "decoded by every proxy (the CPU is paid per proxy), then replaced by an identical object "
                        "shared within the worker (memory)",
}


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    out = {}
    for n, target in TARGETS_P99_MS.items():
        got = report["runs"].get(str(n))
        if got is None:
            continue
        conv = got.get("config", {}).get("convergence", {})
        p99 = conv.get("p99_ms")
        if p99 is None or conv.get("missing"):
            why = got.get("error") or f"{conv.get('missing', '?')} proxies never converged"
            out[str(n)] = f"MISS (not measured: {why})"
        else:
            out[str(n)] = f"{'PASS' if p99 <= target else 'MISS'} (p99 {_human(p99)}, target <= {_human(target)})"
    return out


def _human(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _pct(d: dict[str, Any] | None) -> str:
    if not d or "p50_ms" not in d:
        return "-"
    return f"{fmt_ms(d.get('p50_ms'))} / {fmt_ms(d.get('p99_ms'))} / {fmt_ms(d.get('max_ms'))}"


def _res(d: dict[str, Any] | None, name: str) -> str:
    r = (d or {}).get("resources", {}).get(name)
    return f"{r['cpu_pct']:.0f}% / {r['rss_peak_mb']:.0f} MB" if r else "-"


def _samples(d: dict[str, Any] | None) -> str:
    return f"{d['count']}/{d['expected']}" if d and "expected" in d else "-"


def render(report: dict[str, Any]) -> str:
    runs = report["runs"]
    ok = {k: v for k, v in runs.items() if "config" in v}
    lines = [f"\n== control plane ({report['mode']}), ms: p50 / p99 / max over every proxy and change =="]
    rows = []
    for label, s in runs.items():
        conv = s.get("config", {}).get("convergence")
        verdict = report["verdicts"].get(label, "-").split(" ")[0]
        target = TARGETS_P99_MS.get(s["n"]) if label == str(s["n"]) else None
        e = s.get("endpoints", {})
        rows.append([label, s.get("conn", "-"), _samples(conv), _pct(conv), fmt_ms(target) if target else "-", verdict,
                     _pct(e.get("added")), _pct(e.get("expired"))])
    lines.append(table(["proxies", "conns", "samples", "config convergence", "p99 target", "verdict",
                        "endpoint added", "endpoint lease expired"], rows))
    for label, s in ok.items():
        lines.append(f"  {label} config histogram: {histogram_line(s['config']['convergence']['histogram_ms'])}")

    lines.append("\n== cold start: all N at once -> XdsClient.synced (snapshot applied) ==")
    rows = []
    for label, s in runs.items():
        cs = s.get("cold_start")
        if not cs:
            continue
        ws, ramp = cs.get("worker_stats", {}), cs.get("ramped")
        ramp_text = "-" if not ramp else (f"{ramp['waves']}x{ramp['wave']}: {ramp['total_s']}s, own p99 "
                                          f"{fmt_ms(ramp['synced_from_own_start'].get('p99_ms'))}")
        rows.append([label, _samples(cs["synced"]), _pct(cs["synced"]), fmt_ms(cs["connected"].get("p99_ms")),
                     f"{ws.get('snapshot_requests', '-')}/{ws.get('snapshot_failures', '-')}",
                     _samples(cs.get("registered")), _res(cs, "pilot"), ramp_text])
    lines.append(table(["proxies", "synced", "synced p50 / p99 / max", "connected p99", "snapshot req/failed",
                        "registered", "pilot CPU/RSS", "ramped start (waves x size: total, p99)"], rows))

    lines.append("\n== registration of N workloads at once (registry -> etcd -> pilot), registry heartbeat capacity ==")
    rows = []
    for label, s in runs.items():
        g = s.get("registration")
        if not g:
            continue
        hb = g.get("heartbeats", {})
        rows.append([label, f"{g['registrations_per_s']:.0f}", fmt_ms(g["replied"].get("p99_ms")),
                     fmt_ms(g.get("pilot_caught_up_ms")), g["pushes"], g["fanout_mb_at_n"],
                     f"{hb.get('per_s', 0):.0f}", _res(g, "registry"), _res(g, "pilot")])
    lines.append(table(["proxies", "registrations/s", "reply p99", "pilot caught up", "pushes", "MB to N proxies",
                        "heartbeats/s", "registry CPU/RSS", "pilot CPU/RSS"], rows))

    lines.append("\n== resources per scenario: CPU % of one core (average) / peak RSS ==")
    rows = []
    for label, s in runs.items():
        for scen in ("registration", "cold_start", "config", "endpoints"):
            d = s.get(scen)
            if d:
                rows.append([label, scen, *(_res(d, p) for p in PROCESSES)])
            if scen == "cold_start" and d and d.get("ramped"):
                rows.append([label, "  ramped start", *(_res(d["ramped"], p) for p in PROCESSES)])
    lines.append(table(["proxies", "scenario", "pilot", "registry", "auth", "nats-server", "etcd",
                        "sim. proxies (all)"], rows))

    lines.append("\n== bus authentication: proxy credentials, and every proxy connection through the auth callout ==")
    rows = []
    for label, s in runs.items():
        a = s.get("bus_auth")
        if not a:
            continue
        issue, conn, cpu = a["issue"], a.get("connected") or {}, a.get("auth_cold_start") or {}
        rows.append([label, f"{issue['credentials']} in {issue['seconds']}s ({issue['per_s']:.0f}/s)",
                     issue.get("auth_cpu_ms_each", "-"), _samples(conn), _pct(conn),
                     f"{cpu['cpu_s']:.2f}s, {cpu['cpu_pct']:.0f}% / {cpu['rss_peak_mb']:.0f} MB" if cpu else "-",
                     a.get("auth_cpu_ms_per_connection", "-")])
    lines.append(table(["proxies", "credentials issued (operator)", "auth CPU ms each", "connected",
                        "connect p50 / p99 / max (cold start)", "auth CPU, % / RSS (cold start)",
                        "auth CPU ms per connection"], rows))

    if ok:
        lines.append("\n== where the time goes (config change): medians over changes, ms from the apply request ==")
        keys = list(next(iter(ok.values()))["config"]["breakdown_ms"])
        rows = [[k] + [fmt_ms(s["config"]["breakdown_ms"][k]) for s in ok.values()] for k in keys]
        lines.append(table(["step ends", *ok], rows))
        lines.append("\n== CPU ms per config change, by process (all of it must fit in this machine's cores) ==")
        rows = []
        for proc in ("pilot", "nats", "etcd", "registry", "auth", "workers"):
            rows.append([proc if proc != "workers" else "simulated proxies"] + [
                round(1e3 * s["config"]["resources"].get(proc, {}).get("cpu_s", 0) / max(1, s["config"]["applies"]))
                for s in ok.values()])
        rows.append(["  of which decode + ConfigState.apply"] + [
            round(1e3 * (s["config"]["worker_stats"]["decode_s"] + s["config"]["worker_stats"]["apply_s"])
                  / max(1, s["config"]["applies"])) for s in ok.values()])
        lines.append(table(["process", *ok], rows))
        lines.append("\n== compute per step, in-process on the real code (no bus): ms unless named ==")
        ckeys = ["pilot_compile_vs_change_ms", "pilot_compile_vs_change_max_ms", "pilot_compile_endpoint_change_ms",
                 "pilot_snapshot_encode_ms", "snapshot_bytes", "endpoint_push_bytes", "vs_push_bytes",
                 "proxy_snapshot_decode_ms", "proxy_snapshot_apply_ms", "proxy_vs_delta_apply_us",
                 "proxy_endpoint_delta_apply_us"]
        rows = [[k] + [s["costs"].get(k) for s in ok.values()] for k in ckeys]
        rows.append(["resyncs (gaps) / NACKs / NATS slow consumers"] + [
            f"{sum(s[x]['worker_stats']['resyncs'] for x in ('cold_start', 'config', 'endpoints'))} / "
            f"{sum(s[x]['worker_stats']['nacks'] for x in ('cold_start', 'config', 'endpoints'))} / "
            f"{s['slow_consumers']}" for s in ok.values()])
        lines.append(table(["", *ok], rows))
    for label, s in runs.items():
        for scen in ("registration", "cold_start", "config", "endpoints"):
            prof = (s.get(scen) or {}).get("pilot_profile")
            if prof:
                acts = ", ".join(f"{k} {v}%" for k, v in list(prof["activities"].items())[:5])
                lines.append(f"  py-spy pilot {label} {scen}: {prof['busy_s']}s sampled: {acts}")
    for n, v in report["verdicts"].items():
        lines.append(f"target N={n}: {v}")
    for label, s in runs.items():
        if "error" in s:
            lines.append(f"{label}: stopped early: {s['error']}")
        for note in s.get("notes", []):
            lines.append(f"{label}: note: {note}")
    lines.append("(clock: CLOCK_MONOTONIC, one system-wide clock on this host; the simulated proxies share this "
                 f"machine's {os.cpu_count()} cores with the control plane; elapsed {report.get('elapsed_s')}s)")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.controlplane.run")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--results", default="bench-results")
    a = parser.parse_args()
    run(quick=not a.full, results_dir=Path(a.results), smoke=a.smoke)

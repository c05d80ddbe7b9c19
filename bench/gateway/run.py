"""The gateway benchmark (issue 13): `run(quick, results_dir, smoke=False) -> dict`.

Two rows, measured in one run and alternated per repetition (bench/gateway/topology.py):

    isthmus-gateway  load --TLS--> `isthmus gateway run` --auto mTLS, pooled--> bench-backend's sidecar --> nginx
    haproxy-edge     load --TLS--> HAProxy edge --TLS 1.3 + client cert, keep-alive--> HAProxy "sidecar" --> nginx

Per row and repetition, every request `Host: bench.example.com` over https to the edge:
1. wrk warm-up (not recorded), then the maximum throughput over keep-alive TLS connections
   (`wrk -t1 -c32 --latency`, closed loop);
2. new TLS handshakes per second: the same wrk with `Connection: close`, so each request is a new TCP
   connection and a full TLS handshake at the edge (wrk never resumes a session and neither edge issues
   tickets); checked: the edge's counters (gateway /server_info `tls`, HAProxy `show info` CumSslConns)
   must show at least 0.9 new TLS connections per request, and HAProxy no resumed session. The edge-to-sidecar
   hop stays pooled (its new connections per request are reported);
3. latency at a fixed 1,000 rps (loadgen.hey_paced: 10 hey streams, keep-alive TLS);
and for the edge and the sidecar processes, CPU seconds and peak RSS over each run (bench/dataplane/procstat.py).
Figures are medians over the repetitions with (min-max); every Isthmus figure is also given as a ratio to
HAProxy's, computed per repetition.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dataplane import loadgen
from bench.dataplane.mtls import haproxy_ssl_info, inbound_mtls, stats_socket
from bench.dataplane.procstat import MachineSampler, Sampler
from bench.dataplane.run import DISTURBED, Plan, RawLog, _fmt, _spread, _table, environment, summarize
from bench.dataplane.tools import ensure_tools
from bench.dataplane.topology import Pinning
from bench.gateway.topology import GW_HOST, GatewayTopology, edge_socket

ROWS = ("isthmus-gateway", "haproxy-edge")
PLANS = {
    "smoke": Plan("smoke", 1, warmup_s=0, wrk_s=1, hey_s=None, hey_requests=200, pause_s=0.1, wrk_timeout_s=30,
                  hey_timeout_s=30),  # on a loaded test machine only a lost request is an error
    "quick": Plan("quick", 1, warmup_s=1, wrk_s=3, hey_s=3),
    "full": Plan("full", 3, warmup_s=1, wrk_s=8, hey_s=10, retries=1, budget_s=300),
}
# (figure, label, digits): each given as Isthmus / HAProxy
RATIOS = (("rps", "max rps over keep-alive TLS", 2), ("conns_per_s", "new TLS handshakes per s", 2),
          ("lat_p50_ms", "p50 at 1,000 rps", 2), ("lat_p99_ms", "p99 at 1,000 rps", 2),
          ("edge.cpu_per_1k_max_s", "edge CPU s per 1k requests at max", 2),
          ("edge.cpu_ms_per_conn", "edge CPU ms per new TLS connection", 2),
          ("edge.cpu_per_1k_s", "edge CPU s per 1k requests at 1,000 rps", 2),
          ("edge.rss_mb_1k", "edge RSS at 1,000 rps", 2))


class Counters:
    """New TLS connections accepted by a row's edge and by its sidecar (the pooled hop), from their admin ports."""

    def __init__(self, topo: GatewayTopology, name: str) -> None:
        self.topo, self.name = topo, name

    def read(self) -> tuple[int, int, int]:
        """(edge TLS connections, sidecar TLS connections, edge resumed-session %)"""
        t = self.topo
        if self.name == "isthmus-gateway":
            assert t.sidecar is not None
            return t.gateway_tls()["tls"], int(inbound_mtls(t.sidecar)["tls"]), 0
        edge = haproxy_ssl_info(t.work, edge_socket(t.work))
        side = haproxy_ssl_info(t.work, stats_socket(t.work))
        return edge["CumSslConns"], side["CumSslConns"], edge["SslFrontendSessionReuse_pct"]


# HAProxy's SslFrontendSessionReuse_pct is 100 x (1 - key computations / TLS connections) over its last second, so
# handshakes a loaded client aborts before the key exchange read as "reuse" (6% seen on a loaded CI machine);
# a session cache or tickets left on shows as ~98% (wrk resumes whatever it may). Above this: not full handshakes.
MAX_APPARENT_REUSE_PCT = 25


def check_handshakes(name: str, requests: int, before: tuple[int, int, int],
                     after: tuple[int, int, int]) -> tuple[int, int]:
    """(new TLS connections at the edge, at the sidecar) over a `Connection: close` run, from Counters.read()
    before and after it. RuntimeError unless the edge accepted at least 0.9 new TLS connections per request and
    resumed no session: the run measured full handshakes, or it measured nothing it claims."""
    edge_new, side_new = after[0] - before[0], after[1] - before[1]
    if edge_new < 0.9 * requests:
        raise RuntimeError(f"{name}: {requests} requests with Connection: close but {edge_new} new TLS connections")
    if after[2] > MAX_APPARENT_REUSE_PCT:
        raise RuntimeError(f"{name}: the edge resumed {after[2]}% of TLS sessions: not full handshakes")
    return edge_new, side_new


def _window(proxies: list[tuple[str, int]], ours: list[int]) -> tuple[MachineSampler, list[tuple[str, Sampler]]]:
    return MachineSampler(ours).start(), [(role, Sampler(pid).start()) for role, pid in proxies]


def measure(name: str, port: int, proxies: list[tuple[str, int]], counters: Counters, plan: Plan, pin: Pinning,
            log: RawLog, rep: int, ours: list[int]) -> dict[str, Any]:
    """One repetition of one row: flat figures (`rps`, `conns_per_s`, `lat_p99_ms`, `edge.cpu_per_1k_s`, ...)."""
    url, core, out = f"https://127.0.0.1:{port}/", pin.load_core, {}  # type: ignore[var-annotated]
    if plan.warmup_s > 0:
        loadgen.wrk(url, connections=plan.connections, duration=plan.warmup_s, host=GW_HOST, core=core)
    # 1. keep-alive TLS connections, closed loop
    machine, samplers = _window(proxies, ours)
    w = loadgen.wrk(url, connections=plan.connections, duration=plan.wrk_s, host=GW_HOST, core=core,
                    timeout_s=plan.wrk_timeout_s)
    windows, around = [(role, s.stop()) for role, s in samplers], machine.stop()
    log.add(f"rep {rep} {name} wrk keep-alive", w.raw)
    out.update(rps=w.rps, wrk_requests=w.requests, wrk_errors=w.errors, other_cores_max=around.other_cores)
    out.update({f"wrk_{p}_ms": w.latency_ms[p] for p in ("p50", "p99") if p in w.latency_ms})
    for role, win in windows:
        out[f"{role}.cpu_util_max"] = win.cpu_util
        out[f"{role}.cpu_per_1k_max_s"] = win.cpu_s / w.requests * 1000 if w.requests else 0.0
        out[f"{role}.rss_mb_max"] = win.peak_rss_kb / 1024
    time.sleep(plan.pause_s)
    # 2. a new connection (full TLS handshake at the edge) per request
    before = counters.read()
    machine, samplers = _window(proxies, ours)
    h = loadgen.wrk(url, connections=plan.connections, duration=plan.wrk_s, host=GW_HOST, core=core,
                    headers=("Connection: close",), timeout_s=plan.wrk_timeout_s)
    windows, around = [(role, s.stop()) for role, s in samplers], machine.stop()
    after = counters.read()
    log.add(f"rep {rep} {name} wrk Connection: close", h.raw)
    edge_new, side_new = check_handshakes(name, h.requests, before, after)
    out.update(conns_per_s=h.rps, conns_requests=h.requests, conns_errors=h.errors, other_cores_conns=around.other_cores,
               edge_tls_per_request=edge_new / h.requests if h.requests else 0.0,
               upstream_tls_per_request=side_new / h.requests if h.requests else 0.0)
    out.update({f"conns_{p}_ms": h.latency_ms[p] for p in ("p50", "p99") if p in h.latency_ms})
    for role, win in windows:
        out[f"{role}.cpu_util_conns"] = win.cpu_util
        out[f"{role}.cpu_ms_per_conn"] = win.cpu_s / h.requests * 1000 if h.requests else 0.0
    time.sleep(plan.pause_s)
    # 3. latency at a fixed 1,000 rps over keep-alive TLS
    machine, samplers = _window(proxies, ours)
    f = loadgen.hey_paced(url, streams=plan.hey_workers, rate_per_stream=plan.hey_rate_per_worker,
                          duration=plan.hey_s, requests=plan.hey_requests, host=GW_HOST, core=core,
                          timeout_s=plan.hey_timeout_s)
    windows, around = [(role, s.stop()) for role, s in samplers], machine.stop()
    log.add(f"rep {rep} {name} hey", f.raw)
    out.update(fixed_rps=f.rps, fixed_requests=f.requests, fixed_errors=f.errors, other_cores_1k=around.other_cores)
    out.update({f"lat_{k}_ms": f.latency_ms[k] for k in ("p50", "p90", "p99", "max") if k in f.latency_ms})
    for role, win in windows:
        wall = f.duration_s or win.wall_s
        out[f"{role}.cpu_per_1k_s"] = win.cpu_s / f.requests * 1000 if f.requests else 0.0
        out[f"{role}.vcpu_1k"] = win.cpu_s / wall if wall else 0.0
        out[f"{role}.rss_mb_1k"] = win.peak_rss_kb / 1024
    out["disturbance"] = max(out["other_cores_max"], out["other_cores_conns"], out["other_cores_1k"])
    time.sleep(plan.pause_s)
    return out


def ratios(per_rep: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Isthmus / HAProxy per figure of RATIOS, per repetition, then median (min-max) over them."""
    found: dict[str, list[float]] = {}
    for rows in per_rep:
        i, h = rows["isthmus-gateway"], rows["haproxy-edge"]
        for key, _, _ in RATIOS:
            if h.get(key):
                found.setdefault(key, []).append(i.get(key, 0.0) / h[key])
    return {k: _spread(v) for k, v in found.items()}


def render(result: dict[str, Any]) -> str:
    reps, rows = result["plan"]["repetitions"], result["rows"]
    note = "median (min-max) of %d repetitions" % reps if reps > 1 else "1 repetition"
    parts = [f"Isthmus ingress gateway vs HAProxy edge (TLS at the edge, mTLS to the sidecar), mode {result['mode']}, "
             f"{note}; pinning: {result['env']['pinning']}"]
    header = ["row", "max rps (wrk, keep-alive TLS)", "wrk p99 ms", "new TLS conns/s", "edge TLS/req", "upstream TLS/req",
              "rps @1000", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "other load"]
    body = []
    for name in ROWS:
        s = rows[name]["summary"]
        errors = sum(int(r.get(k, 0)) for r in rows[name]["reps"] for k in ("wrk_errors", "conns_errors", "fixed_errors"))
        body.append([name, _fmt(s.get("rps"), 0, reps), _fmt(s.get("wrk_p99_ms"), 2, reps),
                     _fmt(s.get("conns_per_s"), 0, reps), _fmt(s.get("edge_tls_per_request"), 2, reps),
                     _fmt(s.get("upstream_tls_per_request"), 3, reps), _fmt(s.get("fixed_rps"), 0, reps),
                     _fmt(s.get("lat_p50_ms"), 1, reps), _fmt(s.get("lat_p90_ms"), 1, reps),
                     _fmt(s.get("lat_p99_ms"), 1, reps), _fmt(s.get("lat_max_ms"), 1, reps), str(errors),
                     _fmt(s.get("disturbance"), 2, reps)])
    parts.append(_table(header, body))
    header = ["proxy", "CPU cores @max", "CPU s/1k req @max", "CPU ms/new TLS conn", "CPU cores (handshakes)",
              "CPU s/1k req @1000", "vCPU @1000", "RSS MB @1000", "RSS MB @max"]
    body = []
    for name in ROWS:
        s = rows[name]["summary"]
        for role in rows[name]["proxies"]:
            body.append([f"{name} {role}", _fmt(s.get(f"{role}.cpu_util_max"), 2, reps),
                         _fmt(s.get(f"{role}.cpu_per_1k_max_s"), 3, reps), _fmt(s.get(f"{role}.cpu_ms_per_conn"), 3, reps),
                         _fmt(s.get(f"{role}.cpu_util_conns"), 2, reps), _fmt(s.get(f"{role}.cpu_per_1k_s"), 3, reps),
                         _fmt(s.get(f"{role}.vcpu_1k"), 3, reps), _fmt(s.get(f"{role}.rss_mb_1k"), 1, reps),
                         _fmt(s.get(f"{role}.rss_mb_max"), 1, reps)])
    parts.append(_table(header, body))
    r = result["ratios"]
    parts.append(_table(["Isthmus / HAProxy", "ratio"], [[label, _fmt(r.get(key), digits, reps)]
                                                         for key, label, digits in RATIOS]))
    parts.append("new TLS conns/s: wrk with `Connection: close`, a full TLS handshake at the edge per request (TCP "
                 "connect included); edge TLS/req ~1.0 proves it, upstream TLS/req ~0 that the edge-to-sidecar hop "
                 "stayed pooled. Latency: 10 paced hey streams over keep-alive TLS, 0.1 ms resolution, coordinated "
                 f"omission as in the data-plane benchmark. `other load` above {DISTURBED}: disturbed figures.")
    return "\n\n".join(parts)


def run(quick: bool, results_dir: Path, smoke: bool = False) -> dict[str, Any]:
    """Both rows (quick: 1 repetition, short; full: 3; smoke: tiny loads); prints the tables, returns the figures."""
    plan = PLANS["smoke" if smoke else "quick" if quick else "full"]
    started = time.monotonic()
    ensure_tools()
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    log = RawLog(results_dir / "gateway-raw.log")
    pin = Pinning.detect()
    env = environment(pin)
    env["host_header"] = GW_HOST
    work = Path(tempfile.mkdtemp(prefix="isthmus-bench-gateway-"))
    keep_work, per_rep, proxies = True, [], {}  # type: ignore[var-annotated]
    try:
        with GatewayTopology(work, pin) as topo:
            setup_s = time.monotonic() - started
            targets, ours = topo.rows, topo.pids()
            proxies = {name: [role for role, _ in targets[name][1]] for name in ROWS}
            left = plan.repetitions * len(ROWS)
            row_s = plan.row_s + plan.wrk_s + 1.0  # the handshake run
            for rep in range(1, plan.repetitions + 1):
                rows: dict[str, dict[str, Any]] = {}
                for name in ROWS:
                    left -= 1
                    port, pids = targets[name]
                    attempts = []
                    while True:
                        topo.alive()
                        attempts.append(measure(name, port, pids, Counters(topo, name), plan, pin, log, rep, ours))
                        ends = time.monotonic() - started + (left + 1) * row_s
                        if (attempts[-1]["disturbance"] <= DISTURBED or len(attempts) > plan.retries
                                or ends > plan.budget_s):
                            break
                        print(f"  {name} rep {rep}: other work took {attempts[-1]['disturbance']:.2f} cores; "
                              "measuring again", file=sys.stderr)
                    best = min(attempts, key=lambda r: r["disturbance"])
                    best["attempts"] = len(attempts)
                    rows[name] = best
                per_rep.append(rows)
        keep_work = False
    finally:
        if keep_work:
            print(f"gateway benchmark failed; logs kept in {work}/logs and {work}/mesh/logs", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()[0]
    result: dict[str, Any] = {
        "mode": plan.name, "plan": {"repetitions": plan.repetitions, "warmup_s": plan.warmup_s, "wrk_s": plan.wrk_s,
                                    "hey_s": plan.hey_s, "hey_requests": plan.hey_requests,
                                    "connections": plan.connections, "fixed_rps": plan.fixed_rps},
        "env": env,
        "rows": {name: {"proxies": proxies[name], "summary": summarize([rep[name] for rep in per_rep]),
                        "reps": [rep[name] for rep in per_rep]} for name in ROWS},
    }
    result["ratios"] = ratios(per_rep)
    result["setup_s"] = round(setup_s, 2)
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    print(render(result))
    print(f"\n(gateway: {result['elapsed_s']:.0f} s, set-up {setup_s:.1f} s; raw tool output in {log.path})")
    return result


if __name__ == "__main__":  # python -m bench.gateway.run [--full|--smoke] [results_dir, default bench/results/gateway]
    args = sys.argv[1:]
    rest = [a for a in args if not a.startswith("--")]
    out_dir = Path(rest[0]) if rest else Path(__file__).resolve().parent.parent / "results" / "gateway"
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = run(quick="--full" not in args, results_dir=out_dir, smoke="--smoke" in args)
    (out_dir / "gateway.json").write_text(json.dumps(figures, indent=1) + "\n")

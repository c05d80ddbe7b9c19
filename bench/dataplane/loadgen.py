"""Load generators and their output parsers.

    wrk(url, ...)        -> WrkResult   closed loop, fixed connections: the maximum throughput
    hey_paced(url, ...)  -> HeyResult   fixed rate: N hey processes (`-c 1 -q R`), start times spread
                                        over one period, per-request CSV merged: latency at a given load
    hey(url, ...)        -> HeyResult   fixed rate with one hey (`-c N -q R`), its text summary parsed

Why hey_paced: one hey's workers each own a ticker started at the same instant, so `-c 10 -q 100` sends
bursts of 10 requests every 10 ms, not one request a millisecond; the p50 then measures queueing behind
the burst (nginx direct: p50 0.4 ms with one hey, 0.1 ms paced, on the 2-core bench VM). Spreading the
start of ten `-c 1 -q 100` processes over the 10 ms period gives close to evenly spaced arrivals.

Both run under `taskset -c <core>` when a core is given. Parsers are pure functions of the text the
tools print (tested on captured output), so a tool upgrade that changes the format fails loudly.

Caveat (coordinated omission): hey paces each worker with a ticker and waits for a response before the
next request, so a stall delays the requests that should have been sent meanwhile and they are never
measured; tail latencies (p99, max) under-report what an open-loop client would see. hey also prints
latencies with 0.1 ms resolution (`%4.4f` seconds): differences below 0.1 ms are noise.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any


class LoadError(RuntimeError):
    pass


def _pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


def _run(argv: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"`{' '.join(argv)}` did not finish in {timeout:g}s") from exc
    if done.returncode != 0:
        raise LoadError(f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stdout[-2000:]}")
    return done.stdout


# ------------------------------------------------------------------------------------------- wrk

_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise LoadError(f"wrk: cannot read duration {text!r}")
    return float(m.group(1)) * _UNITS_S[m.group(2)] * 1e3


@dataclass
class WrkResult:
    rps: float
    requests: int
    duration_s: float
    latency_ms: dict[str, float]  # p50 p75 p90 p99 avg max, at the maximum load (closed loop)
    errors: int  # socket errors of every kind + non-2xx/3xx responses
    raw: str = field(repr=False, default="")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw")
        return d


def parse_wrk(text: str) -> WrkResult:
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    n = re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", text, re.M)
    if not m or not n:
        raise LoadError(f"wrk: unexpected output:\n{text[-1500:]}")
    latency: dict[str, float] = {}
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)\s*$", text, re.M):
        latency[f"p{pct}"] = _duration_ms(value)
    stats = re.search(r"^\s+Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", text, re.M)
    if stats:
        latency["avg"] = _duration_ms(stats.group(1))
        latency["max"] = _duration_ms(stats.group(3))
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if bad:
        errors += int(bad.group(1))
    return WrkResult(float(m.group(1)), int(n.group(1)), _duration_ms(n.group(2)) / 1e3, latency, errors, text)


def wrk(url: str, *, connections: int = 32, duration: int = 5, threads: int = 1, host: str | None = None,
        core: int | None = None, timeout_s: float = 2.0, headers: tuple[str, ...] = ()) -> WrkResult:
    """`headers`: more `Name: value` request headers (e.g. `Connection: close`: a new connection per request)."""
    duration = max(1, int(duration))  # wrk takes whole seconds
    argv = [*_pin(core), "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
            "--timeout", f"{timeout_s:g}s", "--latency"]
    if host:
        argv += ["-H", f"Host: {host}"]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    return parse_wrk(_run(argv, duration + 30))


# ------------------------------------------------------------------------------------------- hey


@dataclass
class HeyResult:
    rps: float
    requests: int  # responses of any status, plus errors
    ok: int  # 2xx responses
    errors: int  # transport errors + non-2xx responses
    latency_ms: dict[str, float]  # p10 p25 p50 p75 p90 p95 p99 avg max (0.1 ms resolution)
    duration_s: float
    raw: str = field(repr=False, default="")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw")
        return d


def parse_hey(text: str) -> HeyResult:
    total = re.search(r"^\s*Total:\s+([\d.]+) secs", text, re.M)
    rps = re.search(r"^\s*Requests/sec:\s+([\d.]+)", text, re.M)
    if not total or not rps:
        raise LoadError(f"hey: unexpected output:\n{text[-1500:]}")
    latency: dict[str, float] = {}
    for pct, secs in re.findall(r"^\s+(\d+)%+ in ([\d.]+) secs", text, re.M):
        latency[f"p{pct}"] = float(secs) * 1e3
    slowest = re.search(r"^\s*Slowest:\s+([\d.]+) secs", text, re.M)
    average = re.search(r"^\s*Average:\s+([\d.]+) secs", text, re.M)
    if slowest:
        latency["max"] = float(slowest.group(1)) * 1e3
    if average:
        latency["avg"] = float(average.group(1)) * 1e3
    ok = bad = 0
    for code, count in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", text, re.M):
        if 200 <= int(code) < 300:
            ok += int(count)
        else:
            bad += int(count)
    transport = 0
    if "Error distribution:" in text:
        tail = text.split("Error distribution:", 1)[1]
        transport = sum(int(x) for x in re.findall(r"^\s+\[(\d+)\]\s", tail, re.M))
    return HeyResult(float(rps.group(1)), ok + bad + transport, ok, bad + transport, latency,
                     float(total.group(1)), text)


def hey(url: str, *, workers: int = 10, rate_per_worker: float = 100, duration: float | None = 5.0,
        requests: int | None = None, host: str | None = None, core: int | None = None,
        timeout_s: int = 5) -> HeyResult:
    """Fixed rate: `workers` x `rate_per_worker` requests per second, for `duration` s or `requests` in all."""
    argv = [*_pin(core), "hey", "-c", str(workers), "-q", f"{rate_per_worker:g}", "-t", str(timeout_s)]
    if requests is not None:
        argv += ["-n", str(requests)]
        limit = requests / max(workers * rate_per_worker, 1) + 30 + 2 * timeout_s
    else:
        assert duration is not None
        argv += ["-z", f"{duration:g}s"]
        limit = duration + 30 + 2 * timeout_s
    if host:
        argv += ["-host", host]
    argv.append(url)
    return parse_hey(_run(argv, limit))


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (pct in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def parse_hey_csv(text: str) -> tuple[list[float], int]:
    """(latencies in ms of 2xx responses, count of other statuses) from `hey -o csv` output.

    hey leaves transport errors out of the CSV: the caller counts them as requests that are missing.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("response-time,"):
        raise LoadError(f"hey: unexpected csv output:\n{text[:500]}")
    header = lines[0].split(",")
    i_time, i_status = header.index("response-time"), header.index("status-code")
    ok: list[float] = []
    bad = 0
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) < len(header):
            continue
        if 200 <= int(fields[i_status]) < 300:
            ok.append(float(fields[i_time]) * 1e3)
        else:
            bad += 1
    return ok, bad


def hey_paced(url: str, *, streams: int = 10, rate_per_stream: float = 100, duration: float | None = 5.0,
              requests: int | None = None, host: str | None = None, core: int | None = None,
              timeout_s: int = 5) -> HeyResult:
    """`streams` x `rate_per_stream` rps for `duration` s (or `requests` in all), arrivals spread evenly.

    Each stream is its own `hey -c 1 -q R -n N -o csv`; stream i starts i/streams of a period after the
    first. Latencies keep hey's 0.1 ms resolution.
    """
    per_stream = (requests // streams if requests is not None
                  else int(round((duration or 0) * rate_per_stream)))
    per_stream = max(per_stream, 1)
    argv = [*_pin(core), "hey", "-c", "1", "-q", f"{rate_per_stream:g}", "-n", str(per_stream),
            "-t", str(timeout_s), "-o", "csv"]
    if host:
        argv += ["-host", host]
    argv.append(url)
    limit = per_stream / rate_per_stream + 30 + 2 * timeout_s  # room for two requests that time out
    offset = 1.0 / rate_per_stream / streams
    procs: list[tuple[subprocess.Popen[bytes], object]] = []
    started = time.monotonic()
    try:
        for i in range(streams):
            due = started + i * offset
            while time.monotonic() < due:  # sub-millisecond: sleep() would overshoot
                pass
            out = tempfile.TemporaryFile()
            procs.append((subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT), out))
        latencies: list[float] = []
        bad = 0
        for proc, out in procs:
            try:
                code = proc.wait(max(limit - (time.monotonic() - started), 1))
            except subprocess.TimeoutExpired as exc:
                raise LoadError(f"`{' '.join(argv)}` did not finish in {limit:g}s") from exc
            out.seek(0)  # type: ignore[attr-defined]
            text = out.read().decode(errors="replace")  # type: ignore[attr-defined]
            if code != 0:
                raise LoadError(f"`{' '.join(argv)}` failed ({code}):\n{text[-2000:]}")
            ok, nok = parse_hey_csv(text)
            latencies += ok
            bad += nok
        elapsed = time.monotonic() - started
    finally:
        for proc, out in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()  # type: ignore[attr-defined]
    latencies.sort()
    expected = per_stream * streams
    missing = max(expected - len(latencies) - bad, 0)  # transport errors: not in hey's csv
    lat = {f"p{p}": percentile(latencies, p) for p in (50, 90, 99)}
    lat["p99.9"] = percentile(latencies, 99.9)
    if latencies:
        lat["max"] = latencies[-1]
        lat["avg"] = sum(latencies) / len(latencies)
    done = len(latencies) + bad
    summary = (f"hey_paced {streams} x `{' '.join(argv)}`: {done} responses ({bad} non-2xx, {missing} "
               f"errors) in {elapsed:.2f}s; " + ", ".join(f"{k} {v:.2f} ms" for k, v in lat.items()) + "\n")
    return HeyResult(done / elapsed if elapsed else 0.0, expected, len(latencies), bad + missing, lat, elapsed,
                     summary)

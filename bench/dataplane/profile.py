"""Profile an Isthmus sidecar under load: `python -m bench.dataplane.profile [--seconds 10] [--out DIR]`.

Starts the benchmark topology, drives the sidecar pair with wrk (closed loop, 32 connections) and
samples the client sidecar with py-spy (pip install py-spy; not a project dependency), once with
Python frames only and once with --native (uvloop/httptools/libc frames), and with `perf record` when
the kernel allows it. Prints the top frames by self time; the collapsed stacks stay in DIR for
flame graphs (speedscope.app opens them, as does flamegraph.pl). `--row isthmus-mtls-pair` samples
the mutual TLS pair instead (bench/dataplane/mtls.py).

`--cpu ROW [ROW ...]` profiles nothing: it drives each row in turn with wrk at max for `--seconds`,
`--rounds` times (rows alternated, the first second of each run left out), and prints each proxy
process's CPU µs per request (utime + stime from /proc, the steadier figure on a shared machine), user and
kernel apart, with system calls and context switches per request (bench/dataplane/cpu_split.py), and the
rps, e.g. `--cpu isthmus-mtls-pair haproxy-tls-pair isthmus-pair`. `--rate 1000` drives them at make
bench's fixed rate instead of at max.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.dataplane import loadgen
from bench.dataplane.cpu_split import cpu_per_request, print_medians
from bench.dataplane.tools import ensure_tools
from bench.dataplane.topology import HOST_HEADER, Pinning, Topology


_LINE = re.compile(r":\d+\)$")


def top_self(collapsed: Path, n: int = 15, by_function: bool = False) -> tuple[int, list[tuple[str, int]]]:
    """(total samples, [(frame, self samples)]) from py-spy's raw/collapsed output.

    by_function: one entry per function (line numbers dropped), not per line.
    """
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        if by_function:
            leaf = _LINE.sub(")", leaf)
        counts[leaf] += int(count)
        total += int(count)
    return total, counts.most_common(n)


def top_inclusive(collapsed: Path, needles: list[str]) -> dict[str, int]:
    """Samples whose stack contains each needle (a function name): where time goes, inclusive."""
    found = dict.fromkeys(needles, 0)
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        for needle in needles:
            if needle in stack:
                found[needle] += int(count)
    return found


def _load(url: str, seconds: int, core: int | None) -> threading.Thread:
    thread = threading.Thread(target=loadgen.wrk, args=(url,),
                              kwargs={"connections": 32, "duration": seconds, "host": HOST_HEADER, "core": core})
    thread.start()
    return thread


def pyspy(pid: int, out: Path, seconds: int, native: bool, core: int | None) -> Path:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    target = out / f"pyspy{'-native' if native else ''}.collapsed"
    argv = [*(["taskset", "-c", str(core)] if core is not None else []), exe, "record", "-p", str(pid),
            "-d", str(seconds), "-r", "250", "--format", "raw", "-o", str(target)]
    if native:
        argv.append("--native")
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=seconds + 60)
    return target


def perf(pid: int, out: Path, seconds: int) -> str:
    data = out / "perf.data"
    rec = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(pid), "-o", str(data),
                          "--", "sleep", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=seconds + 60)
    if rec.returncode != 0:
        return f"perf record failed ({rec.returncode}): {rec.stdout[-500:]}"
    rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "--stdio",
                          "-g", "none", "--percent-limit", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=120)
    text = "\n".join(line for line in rep.stdout.splitlines() if line and not line.startswith("#"))
    (out / "perf-report.txt").write_text(rep.stdout)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "results" / "profile")
    parser.add_argument("--which", choices=["client", "server"], default="client",
                        help="which sidecar of the pair to sample")
    parser.add_argument("--row", choices=["isthmus-pair", "isthmus-single", "isthmus-mtls-pair"],
                        default="isthmus-pair",
                        help="where the load goes; isthmus-single samples the server sidecar alone on its core")
    parser.add_argument("--no-perf", action="store_true")
    parser.add_argument("--cpu", nargs="+", metavar="ROW",
                        help="no profile: CPU µs per request per proxy on these rows (topology row names)")
    parser.add_argument("--rounds", type=int, default=3, help="with --cpu: rounds, the rows alternated in each")
    parser.add_argument("--rate", type=int, default=0, metavar="RPS",
                        help="with --cpu: this fixed rate (make bench's pacing) instead of wrk at max")
    args = parser.parse_args()
    ensure_tools()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    pin = Pinning.detect()
    work = Path(tempfile.mkdtemp(prefix="isthmus-bench-profile-"))
    try:
        with Topology(work, pin) as topo:
            if args.cpu:
                unknown = set(args.cpu) - set(topo.rows)
                if unknown:
                    parser.error(f"unknown rows {sorted(unknown)}: one of {sorted(topo.rows)}")
                print_medians(cpu_per_request(topo, args.cpu, args.seconds, args.rounds, pin.load_core, args.rate))
                return
            mtls = args.row == "isthmus-mtls-pair"
            which = "server" if args.row == "isthmus-single" else args.which
            if mtls:
                sidecar = topo.mesh.mtls_client if which == "client" else topo.mesh.mtls_server
            else:
                sidecar = topo.mesh.client if which == "client" else topo.mesh.server
            assert sidecar is not None
            port = topo.rows[args.row][0]
            url = f"http://127.0.0.1:{port}/"
            loadgen.wrk(url, duration=1, host=HOST_HEADER, core=pin.load_core)  # warm the pools
            for native in (False, True):
                load = _load(url, args.seconds + 2, pin.load_core)
                path = pyspy(sidecar.pid, out, args.seconds, native, pin.load_core)
                load.join()
                for by_function in (False, True):
                    total, top = top_self(path, by_function=by_function)
                    print(f"\n== py-spy{' --native' if native else ''}: {which} sidecar pid {sidecar.pid} "
                          f"({args.row}), {total} samples; top {'functions' if by_function else 'lines'} "
                          f"by self time ({path})")
                    for frame, count in top:
                        print(f"{100 * count / max(total, 1):5.1f}%  {frame}")
                if not native:
                    needles = ["data_received", "on_headers_complete", "_advance", "on_response_head",
                               "on_response_body", "on_response_end", "pick (", "request_head",
                               "write_response_head", "feed_data", "writelines", "write ("]
                    inclusive = top_inclusive(path, needles)
                    print("inclusive: " + ", ".join(f"{k.strip(' (')} {100 * v / max(total, 1):.0f}%"
                                                    for k, v in inclusive.items()))
            if not args.no_perf and shutil.which("perf"):
                load = _load(url, args.seconds + 2, pin.load_core)
                text = perf(sidecar.pid, out, args.seconds)
                load.join()
                print(f"\n== perf (cpu-clock, self time by dso and symbol) ({out / 'perf-report.txt'})")
                print("\n".join(text.splitlines()[:30]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

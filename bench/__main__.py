"""`make bench` / `python -m bench`: the data-plane, gateway and control-plane benchmarks in one run.

    python -m bench            full run (3 repetitions; under 18 minutes on 2 cores: the gateway part ~3-5)
    python -m bench --quick    development run (under 2 minutes)
    python -m bench --smoke    the harness only, tiny loads (what CI runs; no speed asserted)

Figures are printed as tables and written as JSON to bench/results/<UTC time>/ (git ignores it),
with a description of the machine, since every figure is only meaningful beside its peer measured
in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run for development")
    parser.add_argument("--smoke", action="store_true", help="tiny loads: checks the harness works")
    parser.add_argument("--only", choices=("dataplane", "gateway", "controlplane"), help="run one part")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where the JSON goes")
    args = parser.parse_args(argv)

    from bench.dataplane.tools import ensure_tools

    ensure_tools()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results / stamp
    out.mkdir(parents=True, exist_ok=True)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    summary: dict[str, Any] = {"mode": mode, "started": stamp, "machine": machine()}
    print(f"isthmus bench ({mode}) on {summary['machine']['cpus']} cpus, {summary['machine']['cpu_model']}")
    began = time.monotonic()
    parts = [args.only] if args.only else ["dataplane", "gateway", "controlplane"]
    for part in parts:
        if part == "dataplane":
            from bench.dataplane.run import run
        elif part == "gateway":  # issue 13: the ingress gateway against HAProxy as an edge proxy
            from bench.gateway.run import run  # type: ignore[no-redef]
        else:
            from bench.controlplane.run import run  # type: ignore[no-redef]
        print(f"\n=== {part} ===", flush=True)
        figures = run(quick=args.quick or args.smoke, results_dir=out, smoke=args.smoke)
        summary[part] = figures
        (out / f"{part}.json").write_text(json.dumps(figures, indent=2, default=str))
    summary["seconds"] = round(time.monotonic() - began, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nfigures written to {out} ({summary['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instructions per request, counted by callgrind: `python -m bench.dataplane.instructions [--mode M] [MICRO ARGS]`.

Runs `bench.dataplane.micro --mode M --peer-metadata MICRO ARGS` under `valgrind --tool=callgrind` twice, for
2,000 and for 20,000 requests, and prints (Ir(20,000) - Ir(2,000)) / 18,000: the instructions one request
costs, start-up subtracted. Unlike time, the count does not move with other work on a shared machine; what
moves it is the 1% of requests sampled for tracing (outbound) and the hash seed, a few hundred each, so a lever
smaller than that is compared with PYTHONHASHSEED=0 set for both trees. Needs Debian's `valgrind`; each count
takes one to two minutes. The callgrind files stay in the printed directory for `callgrind_annotate`.
docs/performance.md's instruction tables were measured with it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["instructions_per_request", "total_instructions"]

SMALL, LARGE = 2_000, 20_000
_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.M)


def total_instructions(callgrind_out: bytes) -> int:
    """The program's total Ir from a callgrind output file's `summary:` (or `totals:`) line; ValueError if none."""
    found = _TOTAL.search(callgrind_out)
    if found is None:
        raise ValueError("no summary or totals line: not a callgrind output file")
    return int(found[1])


def _count(requests: int, mode: str, extra: list[str], out: Path, cwd: Path) -> int:
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
            "bench.dataplane.micro", "--mode", mode, "--peer-metadata", "--requests", str(requests), *extra]
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return total_instructions(out.read_bytes())


def instructions_per_request(mode: str = "outbound", extra: list[str] | None = None, cwd: Path | None = None,
                             keep: Path | None = None) -> float:
    """Ir per request of the micro benchmark in `mode` (outbound or inbound) with `extra` arguments, for the
    tree at `cwd` (default: this checkout). RuntimeError when valgrind is missing or a run fails."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    where = keep or Path(tempfile.mkdtemp(prefix="isthmus-callgrind-"))
    tree = cwd or Path(__file__).resolve().parents[2]
    small = _count(SMALL, mode, extra or [], where / f"callgrind.{mode}.{SMALL}", tree)
    large = _count(LARGE, mode, extra or [], where / f"callgrind.{mode}.{LARGE}", tree)
    return (large - small) / (LARGE - SMALL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("outbound", "inbound"), default="outbound")
    parser.add_argument("--tree", type=Path, default=None, help="the checkout to measure (default: this one)")
    args, extra = parser.parse_known_args()
    keep = Path(tempfile.mkdtemp(prefix="isthmus-callgrind-"))
    ir = instructions_per_request(args.mode, extra, args.tree, keep)
    seed = os.environ.get("PYTHONHASHSEED", "random")
    print(f"{args.mode} {' '.join(extra)}: {ir:,.0f} instructions per request (PYTHONHASHSEED {seed}; "
          f"callgrind files in {keep})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

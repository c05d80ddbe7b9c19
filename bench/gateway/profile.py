"""Where the ingress gateway's time goes: `python -m bench.gateway.profile [--seconds 10] [--handshakes]`.

Starts the gateway benchmark's topology (bench/gateway/topology.py), drives the gateway with wrk over keep-alive
TLS (or, with --handshakes, `Connection: close`: a full TLS handshake per request) and samples the gateway
process with py-spy (`pip install py-spy`; not a project dependency), without and with `--native`. Prints the
top functions by self time and the inclusive share of a few stages; collapsed stacks stay in
bench/results/profile-gateway for flame graphs. Read py-spy's syscall share as wall time (see
bench/dataplane/README.md, Profiling).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

from bench.dataplane import loadgen
from bench.dataplane.profile import pyspy, top_inclusive, top_self
from bench.dataplane.topology import Pinning
from bench.gateway.topology import GW_HOST, GatewayTopology

STAGES = ["do_handshake", "data_received", "on_headers_complete", "_route", "write", "writev", "ssl.py", "uvloop",
          "httptools", "select_server", "servername", "gc_collect"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--handshakes", action="store_true", help="Connection: close: a new TLS connection each")
    args = parser.parse_args()
    out = Path(__file__).resolve().parent.parent / "results" / "profile-gateway"
    out.mkdir(parents=True, exist_ok=True)
    pin = Pinning.detect()
    with GatewayTopology(Path(tempfile.mkdtemp(prefix="isthmus-gw-profile-")), pin) as topo:
        url = f"https://127.0.0.1:{topo.gateway_port}/"
        pid = topo.rows["isthmus-gateway"][1][0][1]
        headers = ("Connection: close",) if args.handshakes else ()
        for native in (False, True):
            load = threading.Thread(target=loadgen.wrk, args=(url,), kwargs={
                "connections": 32, "duration": args.seconds + 2, "host": GW_HOST, "core": pin.load_core,
                "headers": headers})
            load.start()
            collapsed = pyspy(pid, out, args.seconds, native, pin.load_core)
            load.join()
            total, top = top_self(collapsed, 20, by_function=True)
            kind = "handshakes" if args.handshakes else "keep-alive"
            print(f"\n== py-spy{' --native' if native else ''}, gateway pid {pid}, {kind}: {total} samples, "
                  "top self time by function")
            for frame, count in top:
                print(f"{100 * count / max(total, 1):5.1f}%  {frame}")
            print("inclusive: " + ", ".join(f"{k} {100 * v / max(total, 1):.0f}%"
                                            for k, v in top_inclusive(collapsed, STAGES).items() if v))


if __name__ == "__main__":
    main()

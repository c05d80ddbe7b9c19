"""The data-plane benchmark: load generator -> proxies -> nginx, Isthmus against direct and HAProxy.

    run.py        run(quick, results_dir, smoke) -> dict: every row, tables, PASS/MISS per target
    topology.py   nginx, HAProxy (pair and single) and the Isthmus control plane + two sidecars
    loadgen.py    wrk (max throughput) and hey (fixed rate) runners and their output parsers
    procstat.py   CPU seconds and peak RSS of a process from /proc
    tools.py      ensure_tools(): apt-get install wrk hey haproxy nginx where missing
    profile.py    py-spy and perf of a sidecar under wrk load
    micro.py      the proxy's CPU per request with fake transports (no kernel)

bench/dataplane/README.md explains the method and its caveats.
"""

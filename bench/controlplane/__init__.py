"""The control-plane benchmark: config and endpoint convergence and cold start at N simulated proxies.

    run.py        run(quick, results_dir, smoke) -> dict: starts its own nats/etcd/registry/pilot per N,
                  runs the scenarios, prints tables with PASS/MISS, stops everything
    driver.py     the scenarios for one N (cold start, config convergence, endpoint convergence)
    simproxy.py   worker process: many simulated proxies (the real XdsClient + ConfigState +
                  Registration, no listeners), driven over NATS subjects bench.cp.*
    costs.py      in-process cost of the steps (pilot compile, snapshot encode, proxy decode + apply)
    pyspy.py      optional py-spy profile of pilot, summarised by activity
    procstat.py   CPU seconds and RSS of the control-plane processes, sampled from /proc
    stats.py      percentiles, histograms and text tables
    mesh.py       the benchmark mesh: names, addresses, the DestinationRule and VirtualService YAML

Clock: every timestamp is time.monotonic() (CLOCK_MONOTONIC), which on one Linux host is one
system-wide clock, so a time taken in a worker process and one taken in the driver are comparable.
"""

# Two commands on a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test deps up bench clean

$(BIN)/isthmus: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# UP_ARGS: more `isthmus up` flags, e.g. make demo UP_ARGS="--nats-port 14222 --etcd-port 12379 --ingress-port 18080"
UP_ARGS ?=
demo: $(BIN)/isthmus
	$(BIN)/isthmus up --demo $(UP_ARGS)

up: $(BIN)/isthmus
	$(BIN)/isthmus up $(UP_ARGS)

# The data-plane smoke test (tests/bench) drives wrk, hey, haproxy and nginx, the dashboard's browser test
# (tests/telemetry) Debian's chromium, and tests/integration/test_prometheus.py a real Prometheus (Debian's
# `prometheus`): `deps` installs the missing ones with apt-get (as root, or with sudo -n) and does nothing
# when all are there.
deps: $(BIN)/isthmus
	$(BIN)/python -m bench.dataplane.tools

# Three workers on two cores: the integration tests mostly wait on nats-server, etcd and proxies; a file's
# tests stay together in one worker (--dist loadfile), so module fixtures start once. The suite takes 6-10
# minutes: a run still going at 30 is hung outside any one test (each has pytest-timeout's limit), and is
# interrupted so pytest prints what failed so far. `make test WORKERS=N` for another count (more cores).
WORKERS ?= 3
test: $(BIN)/isthmus deps
	timeout --signal=INT --kill-after=60 1800 $(BIN)/pytest -q -n $(WORKERS) --dist loadfile

# QUICK=1 for a development run (under two minutes); the full run takes under fifteen.
bench: $(BIN)/isthmus
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .isthmus .pytest_cache

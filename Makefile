# Two commands on a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test up bench clean

$(BIN)/isthmus: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

demo: $(BIN)/isthmus
	$(BIN)/isthmus up --demo

up: $(BIN)/isthmus
	$(BIN)/isthmus up

test: $(BIN)/isthmus
	$(BIN)/pytest -q

# QUICK=1 for a development run (under two minutes); the full run takes under fifteen.
bench: $(BIN)/isthmus
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .isthmus .pytest_cache

# Two commands on a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test up clean

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

clean:
	rm -rf $(VENV) .isthmus .pytest_cache

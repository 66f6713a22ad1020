# Thin targets: each one command. `make demo` and `make test` create .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench app

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,app]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fpar demo --out runs/demo

app: $(STAMP)
	$(BIN)/fpar app --runs runs/demo

test: $(STAMP)
	$(BIN)/pytest; code=$$?; [ $$code -eq 5 ] && echo 'pytest collected no tests' >&2; exit $$code

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/python -m compileall -q src tests

bench: $(STAMP)
	$(BIN)/fpar bench --json runs/bench.json

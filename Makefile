# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast property property-thorough bench lint typecheck docs clean soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/durable demo

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow" tests/unit

property-thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest -q tests/property

bench: $(STAMP)
	$(BIN)/python benchmarks/replay.py
	$(BIN)/python benchmarks/steps.py
	$(BIN)/python benchmarks/instructions.py
	$(BIN)/python benchmarks/concurrent_runs.py
	$(BIN)/python benchmarks/sticky_memory.py
	$(BIN)/python benchmarks/streams.py
	$(BIN)/python benchmarks/sse.py
	$(BIN)/python benchmarks/queues.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict   # the API reference, from the docstrings, into site/

clean:
	rm -rf $(VENV) .durable .pytest_cache .mypy_cache .ruff_cache site

# The fault-injection suite for longer: 1,000 SIGKILLs, one every 0.5-2 s, on SQLite (and PostgreSQL
# when DURABLE_TEST_POSTGRES is set); prints its figures (runs, steps, re-executions, lost, duplicated).
soak: $(STAMP)
	DURABLE_FAULT_KILLS=1000 DURABLE_FAULT_MAX_INTERVAL=2 $(BIN)/python -m pytest -q -s -p no:cacheprovider \
		--timeout 7200 tests/unit/test_fault_injection.py

# `make demo`: set everything up, then `edgeprof decide` on the bundled demo model: a verdict.
# `make test`: set everything up, run ruff, mypy and the test suite.
# `make test-fast`: the tests that need neither the demo model nor a server, in seconds.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test test-fast lint setup clean

setup: $(VENV)/.installed

# llama-cpp-python compiles llama.cpp from source (about 10 minutes on 2 cores); pip keeps the
# built wheel in its cache, so a second setup on the same machine takes seconds.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# An illustrative workload, with short profiles (2 passes, 64 tokens) to finish in minutes.
DEMO_ARGS ?= --requests-per-day 2000 --device rpi5-8gb --repetitions 2 --max-tokens 64

demo: setup
	@echo "edgeprof demo: decide $(DEMO_ARGS)"
	@echo "  (an illustrative workload: 2,000 requests/day on an \$$80 Raspberry Pi 5 8 GB; short"
	@echo "   profiles, 2 passes of 64 tokens, so that it finishes in a few minutes)"
	$(BIN)/edgeprof decide $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check edgeprof tests scripts docs/examples
	$(BIN)/ruff format --check edgeprof tests scripts docs/examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# The quick loop while editing: no demo model, no llama.cpp server, nothing over ~3 s; no lint.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not model and not server and not slow"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# `make demo`: set everything up, profile the bundled demo model, print the report.
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

demo: setup
	$(BIN)/edgeprof run
	$(BIN)/edgeprof report

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

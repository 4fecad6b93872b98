# `make demo`: set everything up, then `edgeprof decide` on the bundled demo model: a verdict.
# `make test`: set everything up, run ruff, mypy and the test suite.
# `make test-fast`: the tests that need neither the demo model nor a server (57 s on 2 cores).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test test-fast lint setup clean cmake-args-changed

setup: $(VENV)/.installed

# llama-cpp-python compiles llama.cpp from source (about 10 minutes on 2 cores); pip keeps the
# built wheel in its cache, so a second setup on the same machine takes seconds.
#
# CMAKE_ARGS chooses llama.cpp's GPU backend, e.g. `make setup CMAKE_ARGS="-DGGML_CUDA=on"`
# (README: GPU and Apple); pip's build of llama-cpp-python reads it from the environment. The
# value a .venv was built with is kept in $(CMAKE_STAMP), and a different one rebuilds
# llama-cpp-python in place without pip's cache, which holds the CPU wheel a plain setup
# built. An empty CMAKE_ARGS keeps what the .venv has, so a later plain `make test` does not
# undo a GPU build (`make clean setup` goes back to the CPU); a .venv without the file was
# built before it existed, with none.
CMAKE_STAMP := $(VENV)/.cmake_args
CMAKE_ARGS_WAS := $(strip $(shell cat $(CMAKE_STAMP) 2>/dev/null))
ifneq ($(strip $(CMAKE_ARGS)),)
ifneq ($(strip $(CMAKE_ARGS)),$(CMAKE_ARGS_WAS))
LLAMA_REBUILD := yes
endif
endif
override CMAKE_ARGS := $(or $(strip $(CMAKE_ARGS)),$(CMAKE_ARGS_WAS))
export CMAKE_ARGS
PIP_BUILD = CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(BIN)/python -m pip install --quiet
# The installed version again (a rebuild is not an upgrade); any version in a fresh .venv.
LLAMA_CPP_PIN = $(BIN)/python -c 'import importlib.metadata as m; print("llama-cpp-python==" + m.version("llama-cpp-python"))' 2>/dev/null || echo llama-cpp-python

$(VENV)/.installed: pyproject.toml $(if $(LLAMA_REBUILD),cmake-args-changed)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(LLAMA_REBUILD),$(PIP_BUILD) --no-cache-dir --force-reinstall --no-deps "$$($(LLAMA_CPP_PIN))")
	$(PIP_BUILD) -e '.[dev]'
	printf '%s\n' '$(CMAKE_ARGS)' > $(CMAKE_STAMP)
	touch $@

# Always out of date: a prerequisite only when CMAKE_ARGS is new to this .venv.
cmake-args-changed:

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
# A test that uses the demo model or the server is marked so by tests/markers.py, from what
# it uses: no marker can be forgotten. One pytest worker per core (pytest-xdist): 930 tests in
# 57 s on this project's 2-core machine (101 s in one process).
test-fast: setup
	$(BIN)/python -m pytest -q -n $(JOBS) -m "not model and not server and not slow"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

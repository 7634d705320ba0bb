# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv on first use and install rnnlab (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench-cpu clean clean-kernels

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnlab compare

# The whole suite (layers on the automatic backend: cpu here), then the layer and op
# conformance tests again with the portable backend forced.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q
	RNNLAB_BACKEND=portable $(BIN)/python -m pytest -n 2 -q tests/nn tests/ops

# For local iteration: the suite less the tests marked slow (torchrun jobs, the GPU
# kernels in Triton's interpreter, the README's examples; see tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

bench-cpu: $(STAMP)
	$(BIN)/python benchmarks/cpu_speed.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Numba's disk cache checks only the file a kernel is defined in: after editing a helper
# module of the cpu backend (_math, _blas, _tile, _parallel, _sync), clear it with this.
clean-kernels:
	find src -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-kernels
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

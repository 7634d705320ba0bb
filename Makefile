# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv on first use and install rnnlab (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-cpu clean clean-kernels

# torch first, pinned to the CPU build these machines use (an unpinned torch pulls a CUDA
# build of several GB); rnnlab itself declares only the range it supports.
TORCH_VERSION := 2.13.0

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet 'torch==$(TORCH_VERSION)'
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; \
	  sys.exit(0 if v.startswith('$(TORCH_VERSION)') else f'torch {v} replaced $(TORCH_VERSION)')"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnlab compare

# The whole suite (layers on the automatic backend: cpu here), then the layer and op
# conformance tests again with the portable backend forced.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q
	RNNLAB_BACKEND=portable $(BIN)/python -m pytest -n 2 -q tests/nn tests/ops

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

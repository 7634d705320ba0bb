# Two entry points for a newcomer: `make demo` and `make test`.
# Both create .venv on first use and install rnnlab (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test kernels kernels-float32 kernels-float64 test-suite test-fast test-cpu-isa test-cpu-switches docs lint bench-cpu clean clean-kernels

# torch first, pinned to the CPU build these machines use (an unpinned torch pulls a CUDA
# build of several GB); rnnlab itself declares only the range it supports. The rest through
# uv, which keeps that torch and installs (and byte-compiles) the development set in about
# half of pip's time: CI has 25 minutes for all of `make test`.
TORCH_VERSION := 2.13.0

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet 'torch==$(TORCH_VERSION)'
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e '.[dev]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; \
	  sys.exit(0 if v.startswith('$(TORCH_VERSION)') else f'torch {v} replaced $(TORCH_VERSION)')"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnlab compare

# First the cpu kernels' compile, one process per dtype. Then the whole suite (layers on
# the automatic backend: cpu here) and, beside it, the site's build on the kernels just
# compiled (each one's output printed when it ends). Then the layer and op tests again
# with the portable backend forced (less those that name their backend:
# tests/conftest.py), then the cpu backend's float32 conformance with each other kernel
# variant and with each optional piece switched off.
# --dist worksteal: a worker that runs out of tests takes queued ones from the other, so a
# long test near the end does not leave a core idle.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(MAKE) --no-print-directory -j2 kernels-float32 kernels-float64
	$(MAKE) --no-print-directory -j2 --output-sync=target test-suite docs
	RNNLAB_BACKEND=portable $(BIN)/python -m pytest -n 2 --dist worksteal -q tests/nn tests/ops
	$(MAKE) --no-print-directory test-cpu-isa
	$(MAKE) --no-print-directory test-cpu-switches

# The cpu kernels compiled into the cache once, one process per dtype, so that the
# suite's two workers (and the site's build) do not each compile them cold.
kernels: kernels-float32 kernels-float64

kernels-float32 kernels-float64: $(STAMP)
	$(BIN)/python tests/compile_kernels.py $(@:kernels-%=%)

test-suite: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

# test_cpu_tile.py and test_cpu_isa.py run every variant the CPU has in one process; this
# runs a conformance subset once more per variant forced through RNNLAB_CPU_ISA (the
# automatic choice, the widest, already ran the whole suite): the plain families' float32
# cases, then the masked and layer-normalised kernels' float32 tests.
test-cpu-isa: $(STAMP)
	for isa in $$($(BIN)/python -c "from rnnlab.backends.cpu._isa import runnable; \
	                               print(*(i.name for i in runnable()[1:]))"); do \
	  RNNLAB_CPU_ISA=$$isa $(BIN)/python -m pytest -n 2 -q -k "cpu-f32 or register_tiles" \
	    tests/ops/test_backends_vs_reference.py tests/ops/test_packed_rows.py \
	    tests/backends/test_cpu_backend.py || exit 1; \
	  RNNLAB_CPU_ISA=$$isa $(BIN)/python -m pytest -n 2 -q -k "f32" \
	    tests/backends/test_cpu_masked.py tests/backends/test_cpu_layer_norm.py || exit 1; \
	done

# The cpu backend's float32 conformance subset once more per optional piece switched off
# (backends/cpu/_switches.py): no split across threads; no register tiles (plus the larger
# batched shapes, whose products the tiles would run). One process each (-n 0): workers'
# start-up would cost more than the tests.
test-cpu-switches: $(STAMP)
	RNNLAB_CPU_THREADS=1 $(BIN)/python -m pytest -n 0 -q -k "cpu-f32" \
	  tests/ops/test_backends_vs_reference.py tests/ops/test_packed_rows.py
	RNNLAB_CPU_TILES=0 $(BIN)/python -m pytest -n 0 -q -k \
	  "cpu-f32 or (larger_shapes and gemm and f32)" \
	  tests/ops/test_backends_vs_reference.py tests/ops/test_packed_rows.py \
	  tests/backends/test_cpu_backend.py

# The documentation site into site/ (offline; a warning fails it): the API reference from
# the docstrings, and every tutorial in docs/tutorials/ executed (a failing cell fails it).
docs: $(STAMP)
	MPLBACKEND=Agg NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# For local iteration: the suite less the tests marked slow (torchrun jobs, the GPU
# kernels in Triton's interpreter, the README's examples; see tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

bench-cpu: $(STAMP)
	$(BIN)/python benchmarks/cpu_speed.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# The cpu backend's compiled kernels (cached on disk, and recompiled by themselves after
# any edit to the backend's source): to reclaim the space.
# The cpu backend's compiled kernels live in the user's cache (backends/cpu/_jit.py); a
# stale one is never served (the cache key holds the backend's source hash): this only
# reclaims space. (*.nbi/*.nbc under src: left by versions that cached in the package.)
clean-kernels:
	rm -rf "$$(PYTHONPATH=src $(BIN)/python -c 'from rnnlab.backends.cpu._jit import kernel_folder; print(kernel_folder())')"
	find src -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-kernels
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache

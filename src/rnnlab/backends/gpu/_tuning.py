"""The gpu backend's tuned constants, in one place: each with the reason for its value
and what set it.

No GPU timing has set any of them yet: the block sizes are the largest that ptxas builds
for sm_90 without running out of registers or spilling (tests/backends/gpu/
test_sm90_build.py, no GPU needed), the rest follow from Triton's limits or the kernels'
layout. ``benchmarks/gpu_speed.py`` is the benchmark to retune them with on a GPU; its
results, with date and machine, belong in ``benchmarks/results/``.

Read as ``_tuning.NAME`` at call time (tests lower some to reach rare paths), except
``BARRIER_POLLS``, a Triton constexpr that ``_coop`` binds as a global of its kernels.
"""

import triton.language as tl

# Persistent path (_common.py, <family>.py) --------------------------------------------

# Bytes of padded recurrent weights one persistent program keeps in registers: 32 KiB is
# 16K bf16 / 8K fp32 values, 32 registers a thread at 8 warps. Larger fp32 blocks spill.
# Set by: test_sm90_build.py (ptxas, sm_90).
ON_CHIP_BYTES = 32768

# Batch rows per persistent program: tl.dot needs M >= 16, and more rows would multiply
# the registers the state takes. Set by: Triton's minimum; test_sm90_build.py.
BLOCK_B = 16

# Weight bytes above which a persistent program runs 8 warps instead of 4 (the weights
# spread over more threads' registers). Set by: test_sm90_build.py (ptxas, sm_90).
WIDE_WEIGHT_BYTES = 8192
NARROW_WARPS = 4
WIDE_WARPS = 8

# Tiled path (_common.py, <family>.py) -------------------------------------------------

# The (rows × units) tile of each pointwise step kernel: one warp-friendly row of 64
# units a sample, 16 samples a program. Set by: test_sm90_build.py; to be timed with
# gpu_speed.py.
TILE_B = 16
TILE_H = 64

# Elements of one (rows × 4 gate slots × padded units) block of the layer-normalised
# cells' row kernels (lnlstm.py, lngru.py), which own whole rows since a layer norm
# reduces over a row: 16 rows a program up to H = 64, one row from H = 1024 on. Above
# LN_NARROW_BLOCK elements a program runs LN_WIDE_WARPS (else NARROW_WARPS). Set by:
# test_sm90_build.py (no spills up to H = 2048, fp32 and bf16; at H = 4096 the LSTM's
# one-row block spills tens of bytes at 255 registers, and 16 warps, capped at 128
# registers, spill more); to be timed with gpu_speed.py.
LN_BLOCK = 4096
LN_NARROW_BLOCK = 2048
LN_WIDE_WARPS = 8

# Captured tiled loops kept with RNNLAB_GPU_GRAPHS=1 (each holds its inputs and outputs
# in the graph's pool), least recently used dropped. Set by: memory, not speed.
MAX_GRAPHS = 4

# Cooperative path (_coop.py) ----------------------------------------------------------

# Batch rows per program (a row tile); more rows make more row tiles, and the automatic
# choice takes this path for one tile only (B <= 64). Set by: test_sm90_build.py.
COOP_MAX_ROWS = 64

# Hidden units per program's slice above which the per-step product is too long for
# this path (the tiled one runs instead). Set by: test_sm90_build.py.
COOP_MAX_UNITS = 64

# Columns of K per chunk of the per-step product h·W_slice (halved for tiles of more
# than 16 rows, and again for fp32). Set by: test_sm90_build.py.
COOP_MAX_K = 64

# A weight slice up to this size stays in registers (tiles of <= 16 rows); larger held
# slices (an LSTM at H = 1024 holds 64 KiB) build at the 255-register ceiling with
# spills, and at 64 rows with kilobytes of them. Set by: test_sm90_build.py.
HELD_BYTES = 16384

# Warps of a cooperative program and its register ceiling: one program per SM by design,
# so it may take the whole register file (without it ptxas aims for two programs an SM,
# 128 registers, and spills). Set by: test_sm90_build.py.
COOP_WARPS = 8
COOP_MAX_REGISTERS = 255

# Spins on a grid barrier before a program gives up (about 2-4 s) and the host falls back
# to the tiled path: far beyond any step, short enough to report a hang. Set by: the
# barrier's timeout test (check_gpu_backend.py lowers it).
BARRIER_POLLS = tl.constexpr(1 << 22)

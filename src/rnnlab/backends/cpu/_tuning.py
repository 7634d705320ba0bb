"""The cpu backend's tuned constants, in one place: each with the reason for its value
and the measurement that set it (the timings themselves are in
benchmarks/results/cpu-tuning.md, with the machine they come from).

Read as ``_tuning.NAME`` at call time (tests lower them to reach rare paths); the
compiled kernels take ``LONG_WAIT`` and ``SPINS`` as constants when they compile
(``WAIT_BOUND`` travels in each call's step flags).
"""

# Threads (_parallel.py) ---------------------------------------------------------------

# FLOPs a part must do for a split by samples to pay: handing a part to another thread
# costs tens of µs, about this much work on one core. Set by: cpu_speed.py "B16 T200".
MIN_PART_FLOPS = 1 << 22

# Hidden units per thread below which a split by units does not pay: every step ends with
# the threads meeting (~1-2 µs). Set by: cpu_speed.py "B1 T1000" LSTM inference.
MIN_UNITS = 64

# A split by units that spends more than this share of a call in long waits is a strike
# (a partner off its core: load); STRIKES in a row pause it for PAUSE_SECONDS. Set by:
# cpu_speed.py --under-load, B = 1 H = 128 LSTM inference.
LONG_WAIT_SHARE = 0.2
STRIKES = 2
PAUSE_SECONDS = 2.0

# Rows of input projection per chunk in the inference kernels: the chunk's inputs and
# pre-activations stay in a core's cache (256 rows of 4H = 1024 floats: 1 MiB). Set by:
# cpu_speed.py inference rows.
CHUNK_ROWS = 256

# Around the kernels (_common.py) ------------------------------------------------------

# Backward's time blocks, in rows of T·B: the pre-activation gradients exist for one block
# at a time and each weight gradient is one GEMM per block. Set by: cpu_speed.py training
# rows and the training-step peak memory.
BLOCK_ROWS = 1024

# ... and at most 1/BLOCK_SHARE of the sequence, so that the block's gradient buffers stay
# a fraction of the activations the forward saved (with rows alone, a B = 1 sequence was one
# block, and GRU's two (T, 1, 3H) buffers took its training step above torch.nn's peak).
# Set by: cpu_speed.py --memory-only, "B1 T1000" GRU (peak 6.6 -> 4.4 MiB, time within 4 %).
BLOCK_SHARE = 4

# Step flags (_sync.py) ----------------------------------------------------------------

# Polls before a wait starts yielding its core (~10 µs): spinning longer burns the core a
# descheduled partner needs. Set by: cpu_speed.py --under-load, split by units.
SPINS = 4000

# Cycles after which one wait gives up (~30 ms at 3 GHz, thousands of steps at B = 1): the
# call is abandoned and runs again on one thread (_sync.py). Only a partner that never
# arrives (its thread not scheduled for that long) reaches it; long waits pause the
# split well before (LONG_WAIT, STRIKES). Read when a call starts.
WAIT_BOUND = 100_000_000

# Cycles of one wait beyond which it counts as long (~30 µs, ten steps at B = 1): a
# partner off its core. Set by: cpu_speed.py --under-load, split by units.
LONG_WAIT = 100_000

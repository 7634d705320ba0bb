"""Splitting one op call across threads by samples, and ordering each part's rows.

The samples of a batch are independent: their recurrences never meet. So the kernels
take the batch rows they own (``rows``, an index array) and each part runs the whole
time loop for its rows on its own thread, with no synchronisation until the call ends.
Nothing waits per step: when another process holds a core, a descheduled part delays
the call by its own share of the work, never by a per-step barrier (which is what makes
a parallel region per step collapse under load, see :func:`._blas.gemm_threads`).

Within a part, rows are ordered longest sequence first. At step t the rows still inside
their sequence are then a prefix of the part, and the per-step product runs over that
prefix only: padded steps of variable-length batches (packed sequences) cost nothing.
Kernels keep the rows that feed a matrix product (h_{t-1}, the gate gradients) in this
order in their own buffers, and read and write the caller's (T, B, ·) tensors by index.

Thread count: torch's setting (``torch.get_num_threads()``, as the caller made it), at
most one part per sample, and only parts with enough work to pay for a thread hand-off.
The parts run as one parallel region of torch's own OpenMP team (:func:`run_parts`).

One sample (B = 1) cannot be split this way; LSTM inference then splits each step's
hidden units instead (:func:`split_units`), whose threads meet every step.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from rnnlab.backends.cpu import _tuning
from rnnlab.backends.cpu._blas import gemm_nt, gemm_threads, matmul, set_blas_threads
from rnnlab.backends.cpu._common import configured_threads
from rnnlab.backends.cpu._jit import kernel

_busy = threading.Lock()  # one split call at a time; a concurrent caller runs its parts itself


def part_count(B: int, T: int, flops_per_row_step: float) -> int:
    """How many parts to split a call of batch size B and T steps into."""
    threads = configured_threads()
    if threads <= 1 or B < 2:
        return 1
    work = float(T) * B * flops_per_row_step
    return int(max(1, min(threads, B, work // max(_tuning.MIN_PART_FLOPS, 1))))


def split_units(B: int, T: int, H: int, row_step_flops: float) -> int:
    """Threads to split each step's hidden units over (1: don't) — at B = 1 only.

    A split by samples cannot divide one sample; splitting its units costs a meeting of
    the threads every step, which pays at B = 1 only (benchmarks/results/cpu-tuning.md);
    on virtual cores a thread is sometimes off its core for over a millisecond even when
    idle, which a split with no meetings absorbs and this one waits out.
    """
    threads = configured_threads()
    if B != 1 or threads <= 1 or H < 2 * _tuning.MIN_UNITS:
        return 1
    if time.monotonic() < _unit_split_paused_until:
        return 1
    if float(T) * row_step_flops < 2 * _tuning.MIN_PART_FLOPS:
        return 1
    return int(min(threads, H // _tuning.MIN_UNITS))


# A split by units meets every step, so a thread waiting for a time slice (another
# process holding a core) stalls its partner; after ``_tuning.STRIKES`` calls in a row
# with long waits, the split by units pauses for a while.
_unit_split_paused_until = 0.0
_strikes = 0


def note_unit_split(long_wait_cycles: int, call_cycles: int) -> None:
    """Record how a split by units went. Calls that spent more than ``LONG_WAIT_SHARE``
    of their time waiting for a partner off its core are strikes; ``STRIKES`` in a row
    pause the split (one thread runs meanwhile). After the pause it is tried again, so
    the fast path comes back when the load goes."""
    global _unit_split_paused_until, _strikes
    if long_wait_cycles <= _tuning.LONG_WAIT_SHARE * call_cycles:
        _strikes = 0
        return
    _strikes += 1
    if _strikes >= _tuning.STRIKES:
        _strikes = 0
        _unit_split_paused_until = time.monotonic() + _tuning.PAUSE_SECONDS


@kernel(nogil=True)
def unit_range(H, part, parts):
    """Hidden units [j0, j1) of ``part``: equal shares, multiples of 16 where possible."""
    share = -(-H // parts)
    share = -(-share // 16) * 16
    j0 = min(part * share, H)
    return j0, min(j0 + share, H)


def row_parts(lengths: np.ndarray, parts: int) -> list[np.ndarray]:
    """Rows of each part, longest sequence first within a part.

    Equal lengths: contiguous blocks (the rows of a part are neighbours in memory).
    Otherwise the rows sorted by length are dealt out in turn, which balances the work.
    """
    order = np.argsort(-lengths, kind="stable").astype(np.int64)
    if parts <= 1:
        return [order]
    if lengths.size == 0 or lengths.min() == lengths.max():
        return [np.ascontiguousarray(p) for p in np.array_split(order, parts)]
    return [np.ascontiguousarray(order[k::parts]) for k in range(parts)]


def plan(lengths: np.ndarray, T: int, row_step_flops: float, N: int, K: int
         ) -> tuple[list[np.ndarray], int]:
    """Rows of each part, and the BLAS threads each part uses, for a call with per-sample
    ``lengths``, T steps, ``row_step_flops`` recurrent FLOPs per sample and step, and a
    per-step product (B, K)·(K, N). One part may still use BLAS threads inside a very
    long step (:func:`._blas.gemm_threads`); split parts use one each."""
    B = lengths.shape[0]
    rows = row_parts(lengths, part_count(B, T, row_step_flops))
    return rows, (gemm_threads(B, N, K) if len(rows) == 1 else 1)


def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch runs its own parallel regions on, if it has the GNU
    entry point we call (libgomp on Linux; LLVM's libomp provides it too)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        paths = set()
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    if os.path.isdir(lib_dir):
        paths |= {os.path.join(lib_dir, name) for name in os.listdir(lib_dir)}
    for path in sorted(paths):
        name = os.path.basename(path)
        if not name.startswith(("libgomp", "libomp", "libiomp5")) or ".so" not in name:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "GOMP_parallel") and hasattr(lib, "omp_get_thread_num"):
            lib.GOMP_parallel.argtypes = [_TEAM_FN, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
            lib.omp_get_thread_num.restype = ctypes.c_int
            lib.omp_get_num_threads.restype = ctypes.c_int
            return lib
    return None


_TEAM_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_OPENMP = _openmp_runtime()
_job: tuple[Callable[[np.ndarray], None], list[np.ndarray], list[BaseException]] | None = None


def _team_member(_data) -> None:
    """Body of the parallel region: team member k runs part k (errors are kept). A team
    smaller than asked for (a call from inside another parallel region) runs nothing and
    says so, and the caller runs the parts itself."""
    part, rows, errors = _job
    if _OPENMP.omp_get_num_threads() != len(rows):
        if _OPENMP.omp_get_thread_num() == 0:
            errors.append(_TeamTooSmall())
        return
    try:
        part(rows[_OPENMP.omp_get_thread_num()])
    except BaseException as error:  # re-raised by run_parts
        errors.append(error)


class _TeamTooSmall(RuntimeError):
    pass


_TEAM_MEMBER = _TEAM_FN(_team_member)


def _in_threads(part: Callable[[np.ndarray], None], rows: list[np.ndarray],
                errors: list[BaseException]) -> None:
    """Fallback without a usable OpenMP runtime: plain threads."""

    def run(r):
        try:
            part(r)
        except BaseException as error:  # re-raised by run_parts
            errors.append(error)

    others = [threading.Thread(target=run, args=(r,)) for r in rows[1:]]
    for thread in others:
        thread.start()
    run(rows[0])
    for thread in others:
        thread.join()


def run_parts(part: Callable[[np.ndarray], None], rows: list[np.ndarray]) -> None:
    """Call ``part(rows[k])`` for every k, concurrently, and return when all are done
    (re-raising the first error).

    The parts run as one parallel region of torch's own OpenMP thread team: the very
    threads torch's operations use, so the kernels never compete with them for cores
    (a second pool would, against torch's workers still spinning after its last
    operation: measured 2x slower). The compiled kernels release the GIL. If another
    split call is running, this one runs its parts one after the other instead."""
    if not run_together(part, rows):
        for r in rows:
            part(r)


def run_together(part: Callable[[np.ndarray], None], rows: list[np.ndarray]) -> bool:
    """Run every part on its own thread, all at once, and return True; or return False,
    having run nothing, where that cannot be had (another split call running, or a team
    smaller than asked for, as inside another parallel region)."""
    global _job
    if len(rows) == 1:
        part(rows[0])
        return True
    if not _busy.acquire(blocking=False):
        return False
    errors: list[BaseException] = []
    try:
        if _OPENMP is not None:
            _job = (part, rows, errors)
            try:
                _OPENMP.GOMP_parallel(_TEAM_MEMBER, None, len(rows), 0)
            finally:
                _job = None
        else:
            _in_threads(part, rows, errors)
    finally:
        _busy.release()
    if errors:
        if isinstance(errors[0], _TeamTooSmall):
            return False
        raise errors[0]
    return True


@kernel(nogil=True)
def valid_prefix(lengths, rows, t):
    """How many of ``rows`` (longest first) are inside their sequence at step t."""
    m = rows.shape[0]
    while m > 0 and lengths[rows[m - 1]] <= t:
        m -= 1
    return m


def inference_chunk(rows: int) -> int:
    """Steps per chunk of the inference kernels for a part of ``rows`` samples."""
    return max(1, _tuning.CHUNK_ROWS // max(rows, 1))


@kernel(nogil=True)
def gather_inputs(x, lengths, rows, s0, steps, T, reverse, x_buf, start):
    """Copy the inputs of steps s0 .. s0+steps-1 (processing order) of the rows still
    inside their sequence into consecutive rows of x_buf; start[i] ← the first row of
    step i (start[steps] = the total)."""
    total = 0
    for i in range(steps):
        t = T - 1 - (s0 + i) if reverse else s0 + i
        m = valid_prefix(lengths, rows, t)
        start[i] = total
        for k in range(m):
            x_buf[total + k] = x[t, rows[k]]
        total += m
    start[steps] = total


@kernel(nogil=True)
def project_chunk(x, lengths, rows, s0, steps, T, reverse, ih_op, bias, x_buf, pre, start,
                  scratch):
    """The input pre-activations x·W_ihᵀ + bias of steps s0 .. s0+steps-1 (processing
    order) for the rows still inside their sequence: pre[start[i] + k] is row k of step
    i (:func:`gather_inputs`, then one product with ``ih_op`` = ``prepare(W_ih, rows,
    True)``, see :func:`._blas.matmul`)."""
    gather_inputs(x, lengths, rows, s0, steps, T, reverse, x_buf, start)
    if start[steps] > 0:
        matmul(x_buf[: start[steps]], ih_op, pre[: start[steps]], scratch)
        add_bias(pre[: start[steps]], bias)


@kernel(nogil=True, fastmath=True)
def add_bias(a, bias):
    """a (M, N) += bias (N,) on every row."""
    for i in range(a.shape[0]):
        row = a[i]
        for j in range(bias.shape[0]):
            row[j] += bias[j]


@kernel(nogil=True)
def project_into(x, w, bias, out, threads):
    """out (M, N) = x (M, K) · wᵀ + bias, on ``threads`` BLAS threads; ``out`` may be a
    column slice of a wider buffer (rows contiguous, any row stride)."""
    set_blas_threads(threads)
    gemm_nt(x, w, out, 0, (np.zeros(8, dtype=np.int32), np.zeros(2, dtype=out.dtype)))
    set_blas_threads(0)
    add_bias(out, bias)

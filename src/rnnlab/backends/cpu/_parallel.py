"""Splitting one op call across threads by samples, and ordering each part's rows.

The samples of a batch are independent: their recurrences never meet. So the kernels
take the batch rows they own (``rows``, an index array) and each part runs the whole
time loop for its rows on its own thread, with no synchronisation until the call ends.
Nothing waits per step: when another process holds a core, a descheduled part delays
the call by its own share of the work, never by a per-step barrier (which is what makes
a parallel region per step collapse under load: benchmarks/results/cpu-tuning.md).

Within a part, rows are ordered longest sequence first. At step t the rows still inside
their sequence are then a prefix of the part, and the per-step product runs over that
prefix only: padded steps of variable-length batches (packed sequences) cost nothing.
Kernels keep the rows that feed a matrix product (h_{t-1}, the gate gradients) in this
order in their own buffers, and read and write the caller's (T, B, ·) tensors by index.

Thread count: torch's setting (``torch.get_num_threads()``, as the caller made it; at
most ``RNNLAB_CPU_THREADS``, see :func:`._common.configured_threads`), at most one part
per sample, and only parts with enough work to pay for a thread hand-off. The calling
thread runs the first part and a small pool of Python threads the others
(:func:`run_parts`); the compiled kernels release the GIL, and parts never meet until
the end, so a plain pool is all it takes — no OpenMP runtime is called.

One sample (B = 1) cannot be split this way; LSTM inference then splits each step's
hidden units instead (:func:`split_units`), whose threads meet every step, each wait
bounded (:mod:`._sync`: past the bound the call is abandoned and runs again on one
thread, and the split pauses).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from numba import njit

from rnnlab.backends.cpu import _sync, _tuning
from rnnlab.backends.cpu._blas import matmul
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
    global _strikes
    if long_wait_cycles <= _tuning.LONG_WAIT_SHARE * call_cycles:
        _strikes = 0
        return
    _strikes += 1
    if _strikes >= _tuning.STRIKES:
        _pause_unit_split()


def _pause_unit_split() -> None:
    global _unit_split_paused_until, _strikes
    _strikes = 0
    _unit_split_paused_until = time.monotonic() + _tuning.PAUSE_SECONDS


def unit_split_finished(flags: np.ndarray, timing: np.ndarray) -> bool:
    """After a split by units ran (``flags`` from :func:`._sync.step_flags`, ``timing``
    (parts, 2) as the kernel fills it): True if it finished, its long waits noted
    (:func:`note_unit_split`); False if it was abandoned (a wait passed its bound, see
    :mod:`._sync`): its results are incomplete, the caller must run the call again from
    its inputs, and the split pauses at once."""
    if _sync.abandoned(flags):
        _pause_unit_split()
        return False
    note_unit_split(int(timing[:, 0].max()), int(timing[:, 1].max()))
    return True


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


def plan(lengths: np.ndarray, T: int, row_step_flops: float) -> list[np.ndarray]:
    """Rows of each part for a call with per-sample ``lengths``, T steps and
    ``row_step_flops`` recurrent FLOPs per sample and step."""
    return row_parts(lengths, part_count(lengths.shape[0], T, row_step_flops))


_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0


def _workers(size: int) -> ThreadPoolExecutor:
    """A pool of at least ``size`` threads for the parts other than the caller's: made
    on first use, its threads started as needed (never more than the most parts other
    than the caller's that ran at once), idle between calls; a new one when more are
    needed, and in a forked child (which inherits the object, not its threads)."""
    global _pool, _pool_size, _pool_pid
    if _pool is None or _pool_pid != os.getpid() or _pool_size < size:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="rnnlab-cpu")
        _pool_size, _pool_pid = size, os.getpid()
    return _pool


def run_parts(part: Callable[[np.ndarray], None], rows: list[np.ndarray]) -> None:
    """Call ``part(rows[k])`` for every k, concurrently, and return when all are done
    (re-raising the first error). If another split call is running, this one runs its
    parts one after the other instead."""
    if not run_together(part, rows):
        for r in rows:
            part(r)


def run_together(part: Callable[[np.ndarray], None], rows: list[np.ndarray]) -> bool:
    """Run every part on its own thread, all at once — the first on the calling thread,
    the others on the pool — and return True; or return False, having run nothing, while
    another split call holds the pool (its parts could otherwise wait for threads that
    are busy with that call's)."""
    if len(rows) == 1:
        part(rows[0])
        return True
    if not _busy.acquire(blocking=False):
        return False
    try:
        pool = _workers(len(rows) - 1)
        others: list[Future] = [pool.submit(part, r) for r in rows[1:]]
        errors: list[BaseException] = []
        try:
            part(rows[0])
        except BaseException as error:  # re-raised once every part has stopped
            errors.append(error)
        for future in others:
            error = future.exception()
            if error is not None:
                errors.append(error)
    finally:
        _busy.release()
    if errors:
        raise errors[0]
    return True


@kernel(nogil=True)
def valid_prefix(lengths, rows, t):
    """How many of ``rows`` (longest first) are inside their sequence at step t."""
    m = rows.shape[0]
    while m > 0 and lengths[rows[m - 1]] <= t:
        m -= 1
    return m


@kernel(nogil=True)
def clear_padding(block, i, rows, m):
    """block[i, rows[k], :] = 0 for the rows past the live prefix (k ≥ m, their padding
    step): outputs and saved activations are zero there, and a backward gives those steps
    no gradient. Nothing for an empty block (an output not asked for)."""
    if block.shape[0] == 0:
        return
    for k in range(m, rows.shape[0]):
        block[i, rows[k], :] = 0


@kernel(nogil=True)
def clear_step(block, first, rows, m, padded):
    """The row-addressed :func:`clear_padding`: block[first + rows[k]] = 0 for the rows
    past the live prefix (k ≥ m), ``first`` the row of sample 0 at the step. Only in the
    padded layout (``padded``): the packed one has no padding rows. Nothing for an empty
    block."""
    if not padded or block.shape[0] == 0:
        return
    for k in range(m, rows.shape[0]):
        block[first + rows[k]] = 0


@njit(inline="always")
def block_step(s, t_begin, t_end, reverse):
    """Step s of a backward block [t_begin, t_end) walked back (processing order
    reversed): its time index t, t_prev the step before t in processing order, and
    i = t - t_begin, its index in the block's buffers."""
    t = t_begin + s if reverse else t_end - 1 - s
    return t, (t + 1 if reverse else t - 1), t - t_begin


@njit(inline="always")
def chunk_step(start, s0, i, T, reverse):
    """Step i of the inference chunk that begins at processing step s0: its time index t
    and how many rows are live there (:func:`project_chunk` put their input
    pre-activations in pre[start[i]:start[i + 1]])."""
    return (T - 1 - (s0 + i) if reverse else s0 + i), start[i + 1] - start[i]


@njit(inline="always")
def previous(seq, first, t_prev, lengths, b):
    """Sample b's state before the step after t_prev: ``seq[t_prev, b]``, or its initial
    state ``first[b]`` where t_prev is outside its sequence (its first step)."""
    return seq[t_prev, b] if 0 <= t_prev < lengths[b] else first[b]


@njit(inline="always")
def previous_row(seq, first, base, t_prev, lengths, b):
    """The row-addressed :func:`previous`: ``seq[base[t_prev] + b]`` or ``first[b]``."""
    return seq[base[t_prev] + b] if 0 <= t_prev < lengths[b] else first[b]


def inference_chunk(rows: int) -> int:
    """Steps per chunk of the inference kernels for a part of ``rows`` samples."""
    return max(1, _tuning.CHUNK_ROWS // max(rows, 1))


@kernel(nogil=True)
def padded_base(T, B):
    """(T + 1,) the first row of each step of a padded (T, B, ·) tensor viewed as rows:
    t·B (see :class:`._host.Rows`)."""
    return np.arange(T + 1) * B


@kernel(nogil=True)
def gather_inputs(x, base, lengths, rows, s0, steps, reverse, x_buf, start):
    """Copy the inputs of steps s0 .. s0+steps-1 (processing order) of the rows still
    inside their sequence into consecutive rows of x_buf; start[i] ← the first row of
    step i (start[steps] = the total). x as rows: sample b of step t at base[t] + b
    (:class:`._host.Rows`)."""
    T = base.shape[0] - 1
    total = 0
    for i in range(steps):
        t = T - 1 - (s0 + i) if reverse else s0 + i
        m = valid_prefix(lengths, rows, t)
        start[i] = total
        for k in range(m):
            x_buf[total + k] = x[base[t] + rows[k]]
        total += m
    start[steps] = total


@kernel(nogil=True)
def project_chunk(x, base, lengths, rows, s0, steps, reverse, ih_op, bias, x_buf, pre, start):
    """The input pre-activations x·W_ihᵀ + bias of steps s0 .. s0+steps-1 (processing
    order) for the rows still inside their sequence: pre[start[i] + k] is row k of step
    i (:func:`gather_inputs`, then one product with ``ih_op`` = ``prepare(W_ih, rows,
    True)``, see :func:`._blas.matmul`)."""
    gather_inputs(x, base, lengths, rows, s0, steps, reverse, x_buf, start)
    if start[steps] > 0:
        matmul(x_buf[: start[steps]], ih_op, pre[: start[steps]])
        add_bias(pre[: start[steps]], bias)


@kernel(nogil=True, fastmath=True)
def add_bias(a, bias):
    """a (M, N) += bias (N,) on every row."""
    for i in range(a.shape[0]):
        row = a[i]
        for j in range(bias.shape[0]):
            row[j] += bias[j]


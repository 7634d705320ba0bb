"""The per-step matrix product of the recurrence, callable from compiled (Numba) code.

One step of every cell needs C (B, N) = A (B, K) · op(W), with W the recurrent weight,
prepared once per call (:func:`prepare`) and multiplied every step (:func:`matmul`):

- B = 1: a loop over a weight laid out (K, N), vectorised by LLVM (faster than a BLAS
  call, which costs more than the matrix-vector product itself at these sizes).
- float32, B > 1: rnnlab's register-blocked tiles over the weight packed in panels of
  16 columns (:mod:`._tile`), any N (a last partial panel is padded).

Both choices were measured against MKL's sgemm: ``benchmarks/results/cpu-tuning.md``.
- float64, and float32 with ``RNNLAB_CPU_TILES=0``: the B = 1 loop once per row.
  float64 is the exactness path; its speed comes second.

All of it is rnnlab's own compiled code: no BLAS symbol is looked up in torch's or any
other library, so the backend loads on every torch build (ARM, macOS, builds without
MKL), and the compiled kernels are cached on disk like any other.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._tile import LANES, pack_panels, panel_matmul, tiles_enabled


def _is_float32(arr):
    """True if ``arr`` holds float32 (a compile-time constant inside compiled code)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(_is_float32, inline="always")
def _is_float32_impl(arr):
    answer = arr.dtype == types.float32
    return lambda arr: answer


@kernel()
def prepare(W, B, transpose):
    """Get W (R, S) ready to be the right operand of C (B, N) = A · op(W) (:func:`matmul`).

    op(W) = Wᵀ (N = R, K = S) when ``transpose``, else W (N = S, K = R). Returns
    (dense, panels, tail): for float32 at B > 1 with the tiles on, ``panels`` for
    :func:`._tile.panel_matmul` and its ``tail`` buffer (B, 16) where N is not a multiple
    of 16; otherwise ``dense`` (K, N) contiguous for the loops. The unused ones are empty
    (a transposed copy of the weight costs as much as a few steps' products).
    """
    R, S = W.shape
    N = R if transpose else S
    panels = np.empty((0, 0, LANES), dtype=np.float32)
    tail = np.empty((0, LANES), dtype=np.float32)
    if B > 1 and W.size > 0 and _is_float32(W) and tiles_enabled():
        panels = pack_panels(W, transpose)
        if N % LANES:
            tail = np.empty((B, LANES), dtype=np.float32)
        dense = np.empty((0, N), dtype=W.dtype)
    elif transpose:
        dense = np.ascontiguousarray(W.T)
    else:
        dense = np.ascontiguousarray(W)
    return dense, panels, tail


@kernel(fastmath=True)
def _gemv_acc(a, dense, c):
    """c (N,) += a (K,) · dense (K, N), vectorised along N.

    Four rows of ``dense`` per pass over c: one load and store of c per four
    multiply-adds (faster than one row per pass: ``benchmarks/results/cpu-tuning.md``).
    """
    K, N = dense.shape
    K4 = K - K % 4
    for k in range(0, K4, 4):
        a0, a1, a2, a3 = a[k], a[k + 1], a[k + 2], a[k + 3]
        w0, w1, w2, w3 = dense[k], dense[k + 1], dense[k + 2], dense[k + 3]
        for j in range(N):
            c[j] += (a0 * w0[j] + a1 * w1[j]) + (a2 * w2[j] + a3 * w3[j])
    for k in range(K4, K):
        ak = a[k]
        for j in range(N):
            c[j] += ak * dense[k, j]


@kernel()
def matmul(A, op, C):
    """C (B, N) = A (B, K) · op(W), ``op`` from :func:`prepare` for at least B rows; C is
    overwritten. Prepared for several rows, a single row takes the tiles too (the rows
    still inside their sequence can fall to one)."""
    dense, panels, tail = op
    B, K = A.shape
    if K == 0:  # no input feature: nothing to multiply
        C[:, :] = 0
    elif panels.shape[0] > 0:
        panel_matmul(A, panels, C, tail)
    else:
        for i in range(B):
            C[i, :] = 0
            _gemv_acc(A[i], dense, C[i])


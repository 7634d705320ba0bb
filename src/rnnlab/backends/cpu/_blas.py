"""The per-step matrix product of the recurrence, callable from compiled (Numba) code.

One step of every cell needs C (B, N) = A (B, K) · op(W), with W the recurrent weight,
prepared once per call (:func:`prepare`) and multiplied every step (:func:`matmul`):

- B = 1: a loop over a weight laid out (K, N), vectorised by LLVM (measured 1.4-3.7x
  faster than MKL's sgemm at H = 64..256, B = 1: a BLAS call costs more than the
  matrix-vector product itself at these sizes).
- float32, B > 1, N a multiple of 16: rnnlab's register-blocked tiles over the weight
  packed in panels (:mod:`._tile`; 2.1x MKL's packed sgemm on 8 rows).
- float32, B > 1, other N: MKL's packed GEMM (``cblas_sgemm_pack`` once per call, then
  ``cblas_sgemm_compute`` every step).
- float64, B > 1: ``dgemm``.

MKL is the one inside ``libtorch_cpu`` (PyTorch's own BLAS and thread setting). Its
symbols are declared by name (``types.ExternalFunction``), so the compiled kernels can
be cached on disk and linked again in a new process.
"""

from __future__ import annotations

import ctypes
import os

import llvmlite.binding as llvm
import numpy as np
import torch
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from rnnlab.backends.cpu import _tuning
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._tile import LANES, pack_panels, panel_matmul

_SYMBOLS = ("cblas_sgemm_pack", "cblas_sgemm_compute", "cblas_sgemm_pack_get_size", "sgemm_",
            "dgemm_", "MKL_Set_Num_Threads_Local")


def _torch_cpu_library() -> str | None:
    """Path of the torch library exporting MKL's GEMM symbols, or None if it does not."""
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(lib_dir, name)
        if not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            return None
        if all(hasattr(lib, symbol) for symbol in _SYMBOLS):
            return path
    return None


LIBRARY = _torch_cpu_library()
if LIBRARY is None:
    raise ImportError(
        "the rnnlab cpu backend needs the MKL GEMM symbols that PyTorch's x86-64 CPU "
        "builds export from libtorch_cpu; this torch build does not export them"
    )
llvm.load_library_permanently(LIBRARY)

# CBLAS enumerations.
_ROW_MAJOR, _NO_TRANS, _TRANS, _PACKED, _B_MATRIX = 101, 111, 112, 151, 162

_vp = types.voidptr
_i32 = types.int32
_sgemm_pack_get_size = types.ExternalFunction(
    "cblas_sgemm_pack_get_size", types.uintp(_i32, _i32, _i32, _i32)
)
_sgemm_pack = types.ExternalFunction(
    "cblas_sgemm_pack",
    types.void(_i32, _i32, _i32, _i32, _i32, _i32, types.float32, _vp, _i32, _vp),
)
_sgemm_compute = types.ExternalFunction(
    "cblas_sgemm_compute",
    types.void(_i32, _i32, _i32, _i32, _i32, _i32, _vp, _i32, _vp, _i32, types.float32, _vp, _i32),
)
# Fortran interface: every argument by reference.
_dgemm = types.ExternalFunction("dgemm_", types.void(*([_vp] * 13)))
_sgemm = types.ExternalFunction("sgemm_", types.void(*([_vp] * 13)))
_set_threads_local = types.ExternalFunction("MKL_Set_Num_Threads_Local", types.intc(types.intc))


@intrinsic
def _address(typingctx, arr):
    """The data pointer of an array, as void*."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, cgutils.voidptr_t)

    return types.voidptr(arr), codegen


def _is_float32(arr):
    """True if ``arr`` holds float32 (a compile-time constant inside compiled code)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(_is_float32, inline="always")
def _is_float32_impl(arr):
    answer = arr.dtype == types.float32
    return lambda arr: answer


@kernel()
def set_blas_threads(n):
    """Set MKL's thread count for the calling thread; 0 clears it, back to the global
    setting that torch.set_num_threads controls. (MKL's return value — the count in
    effect before — cannot tell a local setting from the global one, so kernels clear
    rather than restore.)"""
    return _set_threads_local(n)


@kernel()
def prepare(W, B, transpose):
    """Get W (R, S) ready to be the right operand of C (B, N) = A · op(W) (:func:`matmul`).

    op(W) = Wᵀ (N = R, K = S) when ``transpose``, else W (N = S, K = R). Returns
    (dense, packed, panels): ``dense`` (K, N) contiguous for the B = 1 loop; for float32
    at B > 1, ``panels`` for :func:`._tile.panel_matmul` where N is a multiple of 16,
    else ``packed``, MKL's packed form (the unused ones empty).
    """
    R, S = W.shape
    if transpose:
        N, K = R, S
        dense = np.ascontiguousarray(W.T)
    else:
        N, K = S, R
        dense = np.ascontiguousarray(W)
    packed = np.empty(0, dtype=np.float32)
    panels = np.empty((0, 0, LANES), dtype=np.float32)
    if B > 1 and W.size > 0 and _is_float32(W):
        if N % LANES == 0:
            panels = pack_panels(W, transpose)
        else:
            size = _sgemm_pack_get_size(_B_MATRIX, B, N, K)
            packed = np.empty(size // 4 + 16, dtype=np.float32)
            trans = _TRANS if transpose else _NO_TRANS
            _sgemm_pack(_ROW_MAJOR, _B_MATRIX, trans, B, N, K, np.float32(1.0), _address(
                np.ascontiguousarray(W)), S, _address(packed))
    return dense, packed, panels


@kernel(fastmath=True)
def _gemv_acc(a, dense, c):
    """c (N,) += a (K,) · dense (K, N), vectorised along N.

    Four rows of ``dense`` per pass over c: one load and store of c per four
    multiply-adds (measured 1.3-1.5x faster than one row per pass at K, N = 64..1024).
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
def matmul(A, op, C, scratch):
    """C (B, N) = A (B, K) · op(W), ``op`` from :func:`prepare`; C is overwritten.

    ``scratch`` is an int32 (8,) array and a (2,) array of the dtype (the by-reference
    arguments of the Fortran call).
    """
    dense, packed, panels = op
    B, K = A.shape
    N = dense.shape[1]
    if K == 0:  # no input feature: nothing to multiply (BLAS rejects a leading dim of 0)
        C[:, :] = 0
    elif B == 1:
        C[0, :] = 0
        _gemv_acc(A[0], dense, C[0])
    elif panels.shape[0] > 0:
        panel_matmul(A, panels, C)
    elif packed.size > 0:
        _sgemm_compute(_ROW_MAJOR, _NO_TRANS, _PACKED, B, N, K, _address(A), K,
                       _address(packed), K, np.float32(0.0), _address(C), N)
    else:
        _fortran_gemm(A, dense, C, 0.0, scratch)


@kernel()
def _fortran_gemm(A, dense, C, beta, scratch):
    """C (B, N) = beta·C + A (B, K) · dense (K, N), float64, as column-major Cᵀ = denseᵀ Aᵀ."""
    B, K = A.shape
    N = dense.shape[1]
    ints = scratch[0]
    ints[0] = N
    ints[1] = B
    ints[2] = K
    ints[3] = 78  # "N"
    scalars = scratch[1]
    scalars[0] = 1.0
    scalars[1] = beta
    _dgemm(_address(ints[3:4]), _address(ints[3:4]), _address(ints[0:1]), _address(ints[1:2]),
           _address(ints[2:3]), _address(scalars[0:1]), _address(dense), _address(ints[0:1]),
           _address(A), _address(ints[2:3]), _address(scalars[1:2]), _address(C),
           _address(ints[0:1]))


def gemm_threads(B: int, N: int, K: int) -> int:
    """Threads for the per-step product: torch's setting from 2^25 multiply-adds per step
    (B=64, H=512 LSTM or GRU), else 1.

    A parallel region per step costs a synchronisation per step. On an idle machine that
    is cheap, but when another process holds a core the worker waits for a time slice
    (benchmarks/results/cpu-tuning.md). Only steps long enough to absorb such a wait are
    split.
    """
    return 1 if B * N * K < _tuning.GEMM_SPLIT_MULTIPLY_ADDS else torch.get_num_threads()


@kernel()
def gemm_nt(A, W, C, beta, scratch):
    """C (M, N) = beta·C + A (M, K) · Wᵀ, W (N, K); rows of A and C contiguous (row
    slices of C-contiguous arrays are). The input projection of a chunk of steps.

    Row-major C = A Wᵀ is column-major Cᵀ = W Aᵀ: Fortran GEMM with op(W) = transpose
    of the column-major (K, N) array that W's memory is. ``scratch`` as for
    :func:`matmul`.
    """
    M, K = A.shape
    N = W.shape[0]
    if M == 0:
        return
    ints = scratch[0]
    ints[0] = N
    ints[1] = M
    ints[2] = K
    ints[3] = 84  # "T"
    ints[4] = 78  # "N"
    ints[5] = C.strides[0] // C.itemsize  # ldc
    ints[6] = max(K, 1)  # lda = ldb: BLAS rejects 0 (K = 0: no input feature, C = beta·C)
    scalars = scratch[1]
    scalars[0] = 1.0
    scalars[1] = beta
    args = (_address(ints[3:4]), _address(ints[4:5]), _address(ints[0:1]), _address(ints[1:2]),
            _address(ints[2:3]), _address(scalars[0:1]), _address(W), _address(ints[6:7]),
            _address(A), _address(ints[6:7]), _address(scalars[1:2]), _address(C),
            _address(ints[5:6]))
    if _is_float32(C):
        _sgemm(*args)
    else:
        _dgemm(*args)

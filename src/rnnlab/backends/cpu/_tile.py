"""A register-blocked product for the per-step recurrence: C (M, N) = A (M, K) · op(W).

One step of a batch multiplies a few rows (8-32 per thread) by the recurrent weight,
the shape where library GEMMs are weakest: MKL's packed sgemm measured 53 GFLOP/s on
8 rows here (K = 256, N = 1024), against 113 for this kernel. The weight is packed once
per call into panels of 16 columns, ``panels[p, k, :] = op(W)[k, 16p : 16p + 16]``;
each tile keeps up to 8 rows × 16 columns of C in vector registers while it walks K
(one panel load, one broadcast per row, one fused multiply-add per row and k), and
stores them once. Written as LLVM IR (llvmlite) because the accumulators must stay in
registers, which LLVM does not do for the same loop written over arrays.

float32 only, N a multiple of 16, A's and C's rows contiguous; C is overwritten.
Sized for AVX-512 (32 vector registers; this machine, tested). Elsewhere LLVM splits the
16-lane vectors into what the CPU has: the results are the same, the speed lower.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16  # floats per vector register (AVX-512); panels are this wide
ROWS = 8  # rows of C per tile
WIDE_ROWS = 3  # up to this many rows, tiles cover two panels

_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _splat(builder, value):
    """A vector with every lane ``value``."""
    one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _make_tile(rows: int, width: int = 1):
    """tile(A, panels, C, m0, p): C[m0 : m0+rows, 16p : 16p+16·width] = A[m0 : m0+rows] ·
    panels[p : p+width]. Two panels at once give a tile of few rows enough independent
    accumulators (rows × width) to keep both FMA pipes busy."""

    @intrinsic
    def tile(typingctx, A, panels, C, m0, p):
        signature = types.void(A, panels, C, types.intp, types.intp)

        def codegen(context, builder, sig, args):
            a = context.make_array(sig.args[0])(context, builder, args[0])
            w = context.make_array(sig.args[1])(context, builder, args[1])
            c = context.make_array(sig.args[2])(context, builder, args[2])
            m0, p = args[3], args[4]
            K = cgutils.unpack_tuple(builder, a.shape, 2)[1]
            four = ir.Constant(_I64, 4)
            lda = builder.sdiv(cgutils.unpack_tuple(builder, a.strides, 2)[0], four)
            ldc = builder.sdiv(cgutils.unpack_tuple(builder, c.strides, 2)[0], four)
            a_ptr = builder.bitcast(a.data, _F32.as_pointer())
            w_ptr = builder.bitcast(w.data, _F32.as_pointer())
            c_ptr = builder.bitcast(c.data, _F32.as_pointer())
            lanes = ir.Constant(_I64, LANES)
            panel = builder.gep(w_ptr, [builder.mul(builder.mul(p, K), lanes)])
            row_ptrs = [
                builder.gep(a_ptr, [builder.mul(builder.add(m0, ir.Constant(_I64, r)), lda)])
                for r in range(rows)
            ]
            panel_size = builder.mul(K, lanes)
            panel_ptrs = [builder.gep(panel, [builder.mul(panel_size, ir.Constant(_I64, v))])
                          for v in range(width)]
            zero = ir.Constant(_VEC, [0.0] * LANES)
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(width)]
                    for _ in range(rows)]
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), "llvm.fma.v16f32"
            )
            with cgutils.for_range(builder, K) as loop:
                k = loop.index
                w_vecs = [
                    builder.load(builder.bitcast(builder.gep(ptr, [builder.mul(k, lanes)]),
                                                 _VEC.as_pointer()), align=4)
                    for ptr in panel_ptrs
                ]
                for r in range(rows):
                    a_rk = _splat(builder, builder.load(builder.gep(row_ptrs[r], [k])))
                    for v in range(width):
                        acc = builder.load(accs[r][v])
                        builder.store(builder.call(fma, [a_rk, w_vecs[v], acc]), accs[r][v])
            col = builder.mul(p, lanes)
            for r in range(rows):
                row = builder.add(m0, ir.Constant(_I64, r))
                out = builder.gep(c_ptr, [builder.add(builder.mul(row, ldc), col)])
                for v in range(width):
                    at = builder.gep(out, [ir.Constant(_I64, v * LANES)])
                    builder.store(builder.load(accs[r][v]),
                                  builder.bitcast(at, _VEC.as_pointer()), align=4)
            return context.get_dummy_value()

        return signature, codegen

    return tile


_T1, _T2, _T3, _T4, _T5, _T6, _T7, _T8 = (_make_tile(r) for r in range(1, ROWS + 1))
_W1, _W2, _W3 = (_make_tile(r, 2) for r in range(1, 4))  # two panels: few rows


@njit(cache=True)
def pack_panels(W, transpose):
    """Panels of op(W) (N, K columns of 16): W (N, K) with ``transpose`` (C = A Wᵀ), else
    W (K, N) (C = A W). N must be a multiple of 16."""
    if transpose:
        N, K = W.shape
    else:
        K, N = W.shape
    panels = np.empty((N // LANES, K, LANES), dtype=np.float32)
    for q in range(N // LANES):
        for k in range(K):
            for j in range(LANES):
                panels[q, k, j] = W[q * LANES + j, k] if transpose else W[k, q * LANES + j]
    return panels


@njit(cache=True)
def _tiles(A, panels, C, m0, p, rows):
    """One tile of ``rows`` (1 .. 8) rows over panel p."""
    if rows == 8:
        _T8(A, panels, C, m0, p)
    elif rows == 7:
        _T7(A, panels, C, m0, p)
    elif rows == 6:
        _T6(A, panels, C, m0, p)
    elif rows == 5:
        _T5(A, panels, C, m0, p)
    elif rows == 4:
        _T4(A, panels, C, m0, p)
    elif rows == 3:
        _T3(A, panels, C, m0, p)
    elif rows == 2:
        _T2(A, panels, C, m0, p)
    else:
        _T1(A, panels, C, m0, p)


@njit(cache=True)
def _wide_tiles(A, panels, C, p, rows):
    """One tile of ``rows`` (1 .. 3) rows over panels p and p + 1."""
    if rows == 3:
        _W3(A, panels, C, 0, p)
    elif rows == 2:
        _W2(A, panels, C, 0, p)
    else:
        _W1(A, panels, C, 0, p)


@njit(cache=True)
def panel_matmul(A, panels, C):
    """C (M, N) = A (M, K) · op(W), op(W) packed by :func:`pack_panels`; C overwritten.

    Panels outer, rows inner: a panel (K × 16 floats) is loaded into L1 once and serves
    every row. Rows in tiles of 8; a last partial tile overlaps the one before it when
    M ≥ 8 (recomputing some rows, harmless when overwriting), else is a smaller tile;
    up to 3 rows take two panels per tile (measured 2 rows: 60 → 97 GFLOP/s, 3 rows:
    86 → 104-108; 4 rows gain nothing, at 115 already).
    """
    M = A.shape[0]
    P = panels.shape[0]
    if M <= WIDE_ROWS:  # few rows: two panels per tile, for enough accumulators
        for p in range(0, P - 1, 2):
            _wide_tiles(A, panels, C, p, M)
        if P % 2:
            _tiles(A, panels, C, 0, P - 1, M)
        return
    for p in range(P):
        if M < ROWS:
            _tiles(A, panels, C, 0, p, M)
            continue
        for m0 in range(0, M - ROWS + 1, ROWS):
            _T8(A, panels, C, m0, p)
        if M % ROWS:
            _T8(A, panels, C, M - ROWS, p)

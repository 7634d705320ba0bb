"""A register-blocked product for the per-step recurrence: C (M, N) = A (M, K) · op(W).

One step of a batch multiplies a few rows (8-32 per thread) by the recurrent weight,
the shape where library GEMMs are weakest (MKL's packed sgemm against these tiles, and
the measurements behind every tile shape below: ``benchmarks/results/cpu-tuning.md``).
The weight is packed once per call into panels of 16 columns,
``panels[p, k, :] = op(W)[k, 16p : 16p + 16]``; each tile keeps ``rows`` × 16 columns
(two panels: × 32) of C in vector registers while it walks K (one panel load, one
broadcast per row, one fused multiply-add per row and k), and stores them once. Written
as LLVM IR (llvmlite) because the accumulators must stay in registers, which LLVM does
not do for the same loop written over arrays.

The tiles come in one variant per instruction set (:mod:`._isa`), each an LLVM function
compiled for its own target features and sized for its registers:

- ``avx512`` (32 registers of 16 floats): 8 rows, 8 accumulators;
- ``avx2`` (16 registers of 8 floats, a 16-column row takes two): 6 rows,
  12 accumulators + 2 panel halves + 1 broadcast = 15 registers (the AVX-512 shape, 8
  rows, needs 16 accumulators alone and spills); two panels only up to 2 rows (3 rows
  × 2 panels = 12 accumulators + 4 panel halves spills);
- ``portable`` (the host's target, whatever it is): 4 rows, 8 accumulators of 16
  floats — 16 registers of 8 floats (AVX), or 16 of NEON's 32 registers of 4.

All variants are compiled into every kernel and :func:`panel_matmul` picks one per call
(``_isa.selected_isa``); they share the packed panels and sum each element of C in the
same order (k ascending, one FMA per k), so they give bitwise the same results.

Any N: the last panel of a width that is not a multiple of 16 is padded with zero
columns, its tiles write a (M, 16) ``tail`` buffer, and the N mod 16 real columns are
copied from it into C. float32 only; A's and C's rows contiguous; C is overwritten.

``RNNLAB_CPU_TILES=0`` (:mod:`._switches`) turns the tiles off: :func:`tiles_enabled`,
which compiled code reads from a process symbol (like the variant, so a kernel from the
disk cache follows this process's setting), is then false and :mod:`._blas` takes its
plain loop instead.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnlab.backends.cpu import _switches
from rnnlab.backends.cpu._isa import (
    AVX2,
    AVX512,
    COMPILED,
    PORTABLE,
    Isa,
    external_symbol,
    note_ran,
    selected_isa,
)
from rnnlab.backends.cpu._jit import kernel

LANES = 16  # columns per panel: one AVX-512 register of floats, two AVX2 ones
ROWS = {AVX512: 8, AVX2: 6, PORTABLE: 4}  # rows of C per tile
WIDE_ROWS = {AVX512: 3, AVX2: 2, PORTABLE: 2}  # up to this many rows, tiles cover two panels
# The same, indexed by Isa.index (a tuple compiled code can index).
_ROWS = tuple(ROWS[isa] for isa in sorted(ROWS, key=lambda i: i.index))
_WIDE_ROWS = tuple(WIDE_ROWS[isa] for isa in sorted(WIDE_ROWS, key=lambda i: i.index))

_F32 = ir.FloatType()
_PTR = _F32.as_pointer()
_VEC = ir.VectorType(_F32, LANES)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
# tile(a, lda, panel, K, c, ldc): a → A[m0], panel → panels[p], c → C[m0, 16p].
_TILE_TYPE = ir.FunctionType(ir.VoidType(), [_PTR, _I64, _PTR, _I64, _PTR, _I64])


# Whether the tiles run (1) or the plain loop (0): a process symbol compiled code reads.
_TILES = ctypes.c_int32(int(_switches.TILES))
_TILES_SYMBOL = "rnnlab_cpu_tiles"
llvm.add_symbol(_TILES_SYMBOL, ctypes.addressof(_TILES))


@contextlib.contextmanager
def use_tiles(on: bool) -> Iterator[None]:
    """Run the block's kernels with the tiles on or off (process-wide, as
    ``RNNLAB_CPU_TILES`` sets it: for tests and benchmarks)."""
    before = _TILES.value
    _TILES.value = int(on)
    try:
        yield
    finally:
        _TILES.value = before


@intrinsic
def tiles_enabled(typingctx):
    """Whether the per-step product may use the tiles (compiled code)."""

    def codegen(context, builder, signature, args):
        value = external_symbol(builder.module, _TILES_SYMBOL, _I32)
        flag = builder.load_atomic(value, "monotonic", 4)
        return builder.icmp_signed("!=", flag, ir.Constant(_I32, 0))

    return types.boolean(), codegen


class _TargetAttributes(ir.FunctionAttributes):
    """Function attributes plus LLVM's string attributes (``"target-cpu"="x86-64"``, ...),
    which llvmlite's attribute set does not take."""

    def __init__(self, strings: dict[str, str], args=()):
        super().__init__(args)
        self.strings = strings

    def _to_list(self, ret_type):
        return [*super()._to_list(ret_type), *(f'"{k}"="{v}"' for k, v in self.strings.items())]


def target_attributes(isa: Isa) -> dict[str, str]:
    """The string attributes that compile a function for ``isa`` (none: the host's target).
    A baseline x86-64 CPU plus the variant's features, tuned for the host; 512-bit vectors
    are kept whole even where the tuning prefers 256 bits (Intel's AVX-512 CPUs)."""
    if not isa.features:
        return {}
    attrs = {"target-cpu": "x86-64", "tune-cpu": llvm.get_host_cpu_name(),
             "target-features": ",".join("+" + f for f in isa.features)}
    if "avx512f" in isa.features:
        attrs["min-legal-vector-width"] = str(LANES * 32)
    return attrs


def _splat(builder, value):
    """A vector with every lane ``value``."""
    one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def tile_name(isa: Isa, rows: int, width: int) -> str:
    return f"rnnlab_tile_{isa.name}_{rows}x{width}"


def _define_tile(module: ir.Module, isa: Isa, rows: int, width: int) -> ir.Function:
    """The tile function of ``isa`` for ``rows`` rows × ``width`` panels, in ``module``:
    C[r, :16·width] = Σ_k A[r, k] · panel[k, :] for r < rows, accumulators in registers."""
    name = tile_name(isa, rows, width)
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, _TILE_TYPE, name)
    fn.linkage = "internal"
    fn.attributes = _TargetAttributes(target_attributes(isa), ("noinline", "nounwind"))
    a_ptr, lda, panel, K, c_ptr, ldc = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    lanes = ir.Constant(_I64, LANES)
    row_ptrs = [builder.gep(a_ptr, [builder.mul(lda, ir.Constant(_I64, r))]) for r in range(rows)]
    panel_ptrs = [builder.gep(panel, [builder.mul(builder.mul(K, lanes), ir.Constant(_I64, v))])
                  for v in range(width)]
    zero = ir.Constant(_VEC, [0.0] * LANES)
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(width)] for _ in range(rows)]
    fma = cgutils.get_or_insert_function(module, ir.FunctionType(_VEC, [_VEC] * 3),
                                         f"llvm.fma.v{LANES}f32")
    with cgutils.for_range(builder, K) as loop:
        k = loop.index
        w_vecs = [builder.load(builder.bitcast(builder.gep(ptr, [builder.mul(k, lanes)]),
                                               _VEC.as_pointer()), align=4)
                  for ptr in panel_ptrs]
        for r in range(rows):
            a_rk = _splat(builder, builder.load(builder.gep(row_ptrs[r], [k])))
            for v in range(width):
                acc = builder.load(accs[r][v])
                builder.store(builder.call(fma, [a_rk, w_vecs[v], acc]), accs[r][v])
    for r in range(rows):
        out = builder.gep(c_ptr, [builder.mul(ldc, ir.Constant(_I64, r))])
        for v in range(width):
            at = builder.gep(out, [ir.Constant(_I64, v * LANES)])
            builder.store(builder.load(accs[r][v]), builder.bitcast(at, _VEC.as_pointer()),
                          align=4)
    builder.ret_void()
    return fn


def _shapes(isa: Isa) -> list[tuple[int, int]]:
    """(rows, width) of every tile :func:`panel_matmul` calls for ``isa``."""
    return ([(r, 1) for r in range(1, ROWS[isa] + 1)]
            + [(r, 2) for r in range(1, WIDE_ROWS[isa] + 1)])


def _key(index, rows, width):
    """The switch value of a tile (index, rows ≤ 31, width 1 or 2)."""
    return (index * 32 + rows) * 2 + width - 1


@intrinsic
def _tile(typingctx, isa, rows, width, A, panels, C, m0, p):
    """C[m0 : m0+rows, 16p : 16p+16·width] = A[m0 : m0+rows] · panels[p : p+width] with the
    tiles of variant ``isa`` (an Isa.index); rows and width as :func:`_shapes` lists."""
    signature = types.void(types.intp, types.intp, types.intp, A, panels, C, types.intp,
                           types.intp)

    def codegen(context, builder, sig, args):
        isa_index, n_rows, n_width = args[0], args[1], args[2]
        a = context.make_array(sig.args[3])(context, builder, args[3])
        w = context.make_array(sig.args[4])(context, builder, args[4])
        c = context.make_array(sig.args[5])(context, builder, args[5])
        m0, p = args[6], args[7]
        K = cgutils.unpack_tuple(builder, a.shape, 2)[1]
        four = ir.Constant(_I64, 4)
        lda = builder.sdiv(cgutils.unpack_tuple(builder, a.strides, 2)[0], four)
        ldc = builder.sdiv(cgutils.unpack_tuple(builder, c.strides, 2)[0], four)
        lanes = ir.Constant(_I64, LANES)
        fn_args = [
            builder.gep(builder.bitcast(a.data, _PTR), [builder.mul(m0, lda)]), lda,
            builder.gep(builder.bitcast(w.data, _PTR), [builder.mul(builder.mul(p, K), lanes)]),
            K,
            builder.gep(builder.bitcast(c.data, _PTR),
                        [builder.add(builder.mul(m0, ldc), builder.mul(p, lanes))]), ldc,
        ]
        key = builder.add(builder.mul(builder.add(builder.mul(isa_index, ir.Constant(_I64, 32)),
                                                  n_rows), ir.Constant(_I64, 2)),
                          builder.sub(n_width, ir.Constant(_I64, 1)))
        done = builder.append_basic_block("tile.done")
        switch = builder.switch(key, done)
        for variant in COMPILED:
            for r, v in _shapes(variant):
                case = builder.append_basic_block(f"tile.{variant.name}.{r}x{v}")
                switch.add_case(ir.Constant(_I64, _key(variant.index, r, v)), case)
                builder.position_at_end(case)
                builder.call(_define_tile(builder.module, variant, r, v), fn_args)
                builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return signature, codegen


@kernel()
def pack_panels(W, transpose):
    """Panels of op(W) (N, K columns of 16): W (N, K) with ``transpose`` (C = A Wᵀ), else
    W (K, N) (C = A W). A last panel of fewer than 16 columns is padded with zeros."""
    if transpose:
        N, K = W.shape
    else:
        K, N = W.shape
    panels = np.zeros((-(-N // LANES), K, LANES), dtype=np.float32)
    for q in range(panels.shape[0]):
        width = min(LANES, N - q * LANES)
        if not transpose:
            for k in range(K):
                for j in range(width):
                    panels[q, k, j] = W[k, q * LANES + j]
            continue
        # Wᵀ: 16 × 16 blocks, each row of W read a cache line at a time (a column walk
        # of 16 rows a power-of-two apart evicts its own lines: 6x slower at K = 512).
        for k0 in range(0, K, LANES):
            k1 = min(k0 + LANES, K)
            for j in range(width):
                row = W[q * LANES + j]
                for k in range(k0, k1):
                    panels[q, k, j] = row[k]
    return panels


@kernel()
def _panel(isa, A, panels, C, p):
    """C[:, 16p : 16p+16] = A · panel p, in ⌈M / ROWS⌉ tiles of the variant's ``ROWS`` rows
    or fewer, their sizes as equal as can be (M = 8 on ``avx2``: 4 + 4, not 6 + 2).

    A tile of r rows keeps r accumulators per 16 columns (AVX2: 2r registers), and one
    step of K takes about max(r · per-row FMA issue, FMA latency) cycles: so a tile of
    ``ROWS`` rows followed by a small one costs about as much as two full tiles, where
    two even tiles cost M rows' worth (``benchmarks/results/cpu-tuning.md``). Every
    element is still summed in the same order, so the result is bitwise the same."""
    rows = _ROWS[isa]
    M = A.shape[0]
    tiles = -(-M // rows)
    m0 = 0
    for q in range(tiles):
        size = -(-(M - m0) // (tiles - q))  # the rows left, shared over the tiles left
        _tile(isa, size, 1, A, panels, C, m0, p)
        m0 += size


@kernel()
def panel_matmul(A, panels, C, tail):
    """C (M, N) = A (M, K) · op(W), op(W) packed by :func:`pack_panels`; C overwritten;
    on the tiles of the selected variant (:mod:`._isa`). ``tail`` (≥ M, 16) float32,
    contiguous: where N is not a multiple of 16, the last panel's result before its
    N mod 16 columns are copied into C (unused otherwise).

    Panels outer, rows inner: a panel (K × 16 floats) is loaded into L1 once and serves
    every row (:func:`_panel`); up to ``WIDE_ROWS`` rows take two panels per tile, for
    enough independent accumulators to keep both FMA pipes busy (the rows where it pays:
    ``benchmarks/results/cpu-tuning.md``).
    """
    isa = selected_isa()
    note_ran(isa)
    M, N = C.shape
    full = N // LANES
    if M <= _WIDE_ROWS[isa]:  # few rows: two panels per tile, for enough accumulators
        for p in range(0, full - 1, 2):
            _tile(isa, M, 2, A, panels, C, 0, p)
        if full % 2:
            _tile(isa, M, 1, A, panels, C, 0, full - 1)
    else:
        for p in range(full):
            _panel(isa, A, panels, C, p)
    rest = N - full * LANES
    if rest:
        _panel(isa, A, panels[full:], tail[:M], 0)
        for i in range(M):
            for j in range(rest):
                C[i, full * LANES + j] = tail[i, j]

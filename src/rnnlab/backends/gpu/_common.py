"""Helpers shared by the Triton cell families: path choice, launch settings, time order,
small device functions, CUDA-graph replay of the tiled loop.

``RNNLAB_GPU_PATH`` = ``tiled`` (default) | ``auto`` | ``persistent`` | ``cooperative``
chooses the execution path (see the package docstring); the tests use it to run each at
small sizes. ``auto`` is the size-based choice between all three; it becomes the default
once the persistent and cooperative kernels have been measured correct on a GPU
(``HARDWARE_VERIFIED``).
``RNNLAB_GPU_GRAPHS=1`` replays the tiled loop from a CUDA graph captured once per problem
shape (opt-in until measured on a GPU).

Time order. Iteration s of a direction visits, for sample b with length L_b,

    forward:  t = s                                  (valid while s < L_b)
    reverse:  t = L_b - 1 - s   if s < L_b,  else t = s    (the padding step s)

so every time index is written exactly once: valid steps with the cell's values,
padding steps with zeros.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends.gpu import _tuning

if TYPE_CHECKING:
    from rnnlab.backends.gpu._coop import Layout

PATH_VAR = "RNNLAB_GPU_PATH"
PATHS = ("auto", "persistent", "cooperative", "tiled")
# Set to True by the session that runs benchmarks/gpu_speed.py on a GPU and commits
# benchmarks/results/gpu.json with every path correct: until then the automatic choice
# for CUDA tensors is the simplest path (tiled), and the persistent and cooperative
# kernels, verified only in Triton's interpreter, are opt-in (RNNLAB_GPU_PATH=auto or
# their own names).
HARDWARE_VERIFIED = False
DEFAULT_PATH = "auto" if HARDWARE_VERIFIED else "tiled"
GRAPHS_VAR = "RNNLAB_GPU_GRAPHS"


def interpreting(device: torch.device) -> bool:
    """True when the kernels run through Triton's CPU interpreter (TRITON_INTERPRET=1)."""
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "") == "1"


def pad(n: int) -> int:
    """Padded block size of a dimension: a power of two, at least 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(n))


def choose_path(weight_bytes: int | None, coop: Layout | None) -> str:
    """"persistent", "cooperative" or "tiled" for a recurrence whose padded recurrent
    weights have this many bytes (None: the persistent kernel does not take this variant);
    ``coop`` is its cooperative layout, None where the variant or the size has none.

    ``RNNLAB_GPU_PATH`` unset or empty means :data:`DEFAULT_PATH`. auto: persistent while
    the weights fit one program; else cooperative for up to one row tile of samples
    (B ≤ 64, where the per-step latency is what counts); else tiled (cuBLAS is efficient
    over many rows). A forced path falls back to tiled where it does not take the variant.
    """
    forced = os.environ.get(PATH_VAR, "").strip() or DEFAULT_PATH
    if forced not in PATHS:
        raise ValueError(
            f"{PATH_VAR}={forced!r} is not a gpu path; expected one of {', '.join(PATHS)}"
        )
    if forced == "cooperative":
        return "cooperative" if coop is not None else "tiled"
    if forced == "persistent":
        return "persistent" if weight_bytes is not None else "tiled"
    if forced == "tiled":
        return "tiled"
    if weight_bytes is not None and weight_bytes <= _tuning.ON_CHIP_BYTES:
        return "persistent"
    return "cooperative" if coop is not None and coop.NR == 1 else "tiled"


def dot_settings(x: Tensor) -> tuple[str, bool]:
    """(input_precision for fp32 tl.dot, upcast flag).

    fp32 follows torch's matmul precision setting: "highest" (the default) -> exact
    fp32 ("ieee", FMA units), "high" -> 3xTF32, "medium" -> TF32. bf16 operands always
    run on the tensor cores with fp32 accumulation. Triton's interpreter multiplies bf16
    blocks wrongly, so there the bf16 operands are upcast to fp32 after rounding — the
    same products, computed exactly.
    """
    if interpreting(x.device):
        return "ieee", x.dtype == torch.bfloat16
    precision = {"highest": "ieee", "high": "tf32x3", "medium": "tf32"}
    return precision[torch.get_float32_matmul_precision()], False


def on_chip_bytes(weight_elements: int, x: Tensor) -> int | None:
    """Bytes of padded weights a persistent program would hold in registers, or None where
    the persistent kernel does not run: exact fp32 products (precision "highest") on a
    GPU, whose FMA form with the weights held in registers Triton 3.9 cannot build for
    sm_90 (an LLVM SLP-vectorizer assertion, or hundreds of bytes of spills:
    tests/backends/gpu/test_sm90_build.py). Those take the cooperative or tiled path;
    with torch.set_float32_matmul_precision("high") fp32 runs persistent as 3xTF32."""
    if (x.dtype == torch.float32 and not interpreting(x.device)
            and torch.get_float32_matmul_precision() == "highest"):
        return None
    return weight_elements * x.element_size()


def dot_flags(x: Tensor) -> dict[str, str | bool]:
    """:func:`dot_settings` as the launch constexprs PRECISION and UPCAST."""
    precision, upcast = dot_settings(x)
    return dict(PRECISION=precision, UPCAST=upcast)


def persistent_settings(x: Tensor, weight_bytes: int) -> dict[str, str | bool | int]:
    """The launch settings every persistent kernel takes: its batch rows per program,
    :func:`dot_flags` and the warps for this many bytes of weights held in registers."""
    return dict(BLOCK_B=_tuning.BLOCK_B, num_warps=num_warps(weight_bytes), **dot_flags(x))


def num_warps(weight_bytes: int) -> int:
    """Warps of a persistent program holding this many bytes of weights in registers."""
    wide = weight_bytes > _tuning.WIDE_WEIGHT_BYTES
    return _tuning.WIDE_WARPS if wide else _tuning.NARROW_WARPS


def full_lengths(lengths: Tensor | None, T: int, B: int, device: torch.device) -> Tensor:
    """Per-sample lengths as int32 on the device (all T when None)."""
    if lengths is None:
        return torch.full((B,), T, dtype=torch.int32, device=device)
    return lengths.to(device=device, dtype=torch.int32)


def run_tiled(
    name: str, body: Callable[..., tuple[Tensor, ...]], args: tuple[Tensor | None, ...], **flags
) -> tuple[Tensor, ...]:
    """body(*args, **flags), the Python loop of a tiled recurrence — launched directly, or
    on CUDA with RNNLAB_GPU_GRAPHS=1 replayed from a CUDA graph captured once per name,
    flags and argument shapes (the arguments are copied into the graph's static inputs,
    the outputs cloned out of its pool)."""
    device = next(a.device for a in args if a is not None)
    if device.type != "cuda" or os.environ.get(GRAPHS_VAR, "0") != "1":
        return body(*args, **flags)
    key = (
        name, tuple(sorted(flags.items())), device.index,
        tuple(None if a is None else (tuple(a.shape), a.dtype) for a in args),
    )
    entry = _graphs.get(key)
    if entry is None:
        static = tuple(None if a is None else a.clone() for a in args)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            body(*static, **flags)  # compiles the kernels, warms cuBLAS: not in the graph
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = body(*static, **flags)
        entry = _graphs[key] = (graph, static, outputs)
        if len(_graphs) > _tuning.MAX_GRAPHS:
            _graphs.popitem(last=False)
    _graphs.move_to_end(key)
    graph, static, outputs = entry
    for buffer, a in zip(static, args, strict=True):
        if a is not None:
            buffer.copy_(a)
    graph.replay()
    return tuple(o.clone() for o in outputs)


_graphs: OrderedDict[tuple, tuple] = OrderedDict()


def dropped(drop_h: Tensor | None, h: Tensor) -> Tensor:
    """u = d ⊙ h, what the masked cells' recurrent products read (h itself without
    recurrent dropout)."""
    return h if drop_h is None else drop_h * h


def h_masks(drop_h: Tensor | None, keep_h: Tensor | None, stand_in: Tensor
            ) -> tuple[tuple[Tensor | int, ...], dict[str, bool]]:
    """The masks of h as the masked kernels' arguments (drop_h, read at the state's
    offsets, then keep_h and its strides: :func:`keep_strides`) and their flags HAS_DROP,
    HAS_KEEP_H; ``stand_in`` (never read) for an absent one."""
    drop = drop_h.contiguous() if drop_h is not None else stand_in
    flags = dict(HAS_DROP=drop_h is not None, HAS_KEEP_H=keep_h is not None)
    return (drop, *keep_strides(keep_h, stand_in)), flags


def keep_strides(keep: Tensor | None, stand_in: Tensor) -> tuple[Tensor, int, int, int]:
    """A zoneout share (T, B, N) as the masked kernels read it: the tensor and its strides,
    so a broadcast view of one number (the eval form, strides 0) is read as it is, never
    copied; without zoneout, ``stand_in`` (never read) and zeros."""
    if keep is None:
        return stand_in, 0, 0, 0
    return (keep, *keep.stride())


def tiled_state(h0: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """A tiled loop's hidden state: (h_state, h_mm), the fp32 state (a copy, never h0) and
    the per-step GEMM's input in the weights' dtype, which :func:`commit_step` keeps equal
    to it (the same tensor for fp32 weights)."""
    h_state = h0.to(torch.float32, copy=True).contiguous()
    h_mm = h_state if w.dtype == torch.float32 else h0.to(w.dtype, copy=True).contiguous()
    return h_state, h_mm


def launch_grid(B: int) -> tuple[int]:
    return (triton.cdiv(B, _tuning.BLOCK_B),)


def tile_grid(B: int, H: int) -> tuple[int, int]:
    return (triton.cdiv(B, _tuning.TILE_B), triton.cdiv(H, _tuning.TILE_H))


def tile_sizes() -> dict[str, int]:
    """The tile of the tiled path's pointwise kernels, as their launch constexprs."""
    return dict(TILE_B=_tuning.TILE_B, TILE_H=_tuning.TILE_H)


# ----------------------------------------------------------------- device functions


@triton.jit
def step_time(s, lens, REVERSE: tl.constexpr):
    """Time index (per row, int64) and validity of iteration s; see the module docstring."""
    valid = s < lens
    if REVERSE:
        t = tl.where(valid, lens - 1 - s, s)
    else:
        t = lens * 0 + s
    return t.to(tl.int64), valid


@triton.jit
def persistent_rows(lens_ptr, B, BLOCK_B: tl.constexpr):
    """This persistent program's batch rows, which of them exist, and their lengths."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    return rows, row_ok, tl.load(lens_ptr + rows, mask=row_ok, other=0)


@triton.jit
def lanes(row_ok, N, NP: tl.constexpr):
    """A persistent program's NP lanes over a dimension of N (hidden units or outputs),
    which of them exist, and the (BLOCK_B, NP) mask of its rows' lanes."""
    cols = tl.arange(0, NP)
    ok = cols < N
    return cols, ok, row_ok[:, None] & ok[None, :]


@triton.jit
def gate_block(w, g, units, units_ok, inputs, inputs_ok, H, K, TRANSPOSED: tl.constexpr):
    """Gate g's block of a (G·H, K) weight as a padded on-chip block, zero outside
    (units, inputs): [k, j] = w[g·H + j, k] when TRANSPOSED (for h·Wᵀ), else [j, k]."""
    if TRANSPOSED:
        ofs = units[None, :] * K + inputs[:, None]
        mask = inputs_ok[:, None] & units_ok[None, :]
    else:
        ofs = units[:, None] * K + inputs[None, :]
        mask = units_ok[:, None] & inputs_ok[None, :]
    return tl.load(w + g * H * K + ofs, mask=mask, other=0.0)


@triton.jit
def commit_step(h_t, h, probe, y, h_state, h_mm, yt, st, m2, vm, HAS_PROBE: tl.constexpr):
    """The end of a tiled forward step: h_t (plus the probe) becomes the state where the
    step is valid (elsewhere the carried h stays), in h_state and in h_mm (the next
    GEMM's input), and y_t (0 at padding). yt: the step's offsets in y, st: the state's."""
    commit_masked_step(h_t, h, h_state, st, h_state, probe, y, h_state, h_mm, yt, st, m2, vm,
                       False, False, HAS_PROBE)


@triton.jit
def commit_masked_step(h_tilde, h, keep_h, kt, drop_h, probe, y, h_state, h_mm, yt, st, m2,
                       vm, HAS_KEEP: tl.constexpr, HAS_DROP: tl.constexpr,
                       HAS_PROBE: tl.constexpr):
    """:func:`commit_step` of a cell with zoneout and recurrent dropout
    (:mod:`rnnlab.reference.lstm_masked`): h_t = k^h_t ⊙ h_{t-1} + (1 - k^h_t) ⊙ h̃_t (k^h
    at offsets kt of keep_h), and the next GEMM's input h_mm is u_t = d ⊙ h_t (d at the
    state's offsets of drop_h). Without them, h_t = h̃_t and u_t = h_t."""
    h_t = zone(h_tilde, h, keep_h, kt, m2 & vm, HAS_KEEP)
    if HAS_PROBE:
        h_t += load_f32(probe + yt, m2 & vm)
    h = tl.where(vm, h_t, h)
    store(h_state + st, h, m2)
    if HAS_DROP:
        store(h_mm + st, h * load_f32(drop_h + st, m2), m2)
    else:
        store(h_mm + st, h, m2)
    store(y + yt, tl.where(vm, h_t, 0.0), m2)


@triton.jit
def zone(new, previous, keep, kt, mask, HAS_KEEP: tl.constexpr):
    """Zoneout: k ⊙ previous + (1 - k) ⊙ new, as new + k ⊙ (previous - new), k at offsets
    kt of keep (see :func:`keep_strides`); new itself without."""
    if HAS_KEEP:
        new += load_f32(keep + kt, mask) * (previous - new)
    return new


@triton.jit
def keep_offsets(t, rows, cols, s_t, s_b, s_n):
    """Offsets of a zoneout share (T, B, N) at step t (per row) of these rows and columns,
    from its strides (0 along the dimensions of a broadcast view)."""
    return t[:, None] * s_t + rows[:, None] * s_b + cols[None, :] * s_n


@triton.jit
def masked_grad_start(du, dy, dh_dir, drop_h, keep_h, yt, st, kt, m2, vm,
                      HAS_DROP: tl.constexpr, HAS_KEEP: tl.constexpr):
    """The start of a tiled step back through a masked cell. du: ∂L/∂u_t through step
    t+1's recurrent products (u_t = d ⊙ h_t); dh_dir: the rest of ∂L/∂h_t from later.
    Returns dh_next = dh_dir + d ⊙ du, the total dh = dy_t + dh_next, and its shares
    (1 - k^h_t) ⊙ dh (to the candidate h̃_t) and k^h_t ⊙ dh (to h_{t-1} directly)."""
    if HAS_DROP:
        du *= load_f32(drop_h + st, m2)
    dh_next = load_f32(dh_dir + st, m2) + du
    dh = load_f32(dy + yt, m2 & vm) + dh_next
    carried = tl.zeros_like(dh)
    if HAS_KEEP:
        carried = load_f32(keep_h + kt, m2 & vm) * dh
    return dh_next, dh, dh - carried, carried


@triton.jit
def tile_step(s, lens_ptr, B, N, TILE_B: tl.constexpr, TILE_H: tl.constexpr,
              REVERSE: tl.constexpr):
    """This program's (TILE_B, TILE_H) tile of a (B, N) step of the tiled path: its rows,
    columns and their mask, and per row the time index of iteration s (int64) and its
    validity as a (TILE_B, 1) column."""
    rows = tl.program_id(0) * TILE_B + tl.arange(0, TILE_B)
    cols = tl.program_id(1) * TILE_H + tl.arange(0, TILE_H)
    m2 = (rows < B)[:, None] & (cols < N)[None, :]
    lens = tl.load(lens_ptr + rows, mask=rows < B, other=0)
    t, valid = step_time(s, lens, REVERSE)
    return rows, cols, m2, t, valid[:, None]


@triton.jit
def tanh(x):
    """tanh(x) = sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|}): no overflow for any x."""
    e = tl.exp(-2.0 * tl.abs(x))
    th = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -th, th)


@triton.jit
def mm(a, w, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """a (M, K) fp32 · w (K, N) in the weights' dtype -> (M, N) fp32.

    The fp32 state is rounded to the weights' dtype first (bf16 on the tensor cores).
    """
    a = a.to(w.dtype)
    if UPCAST:
        out = tl.dot(a.to(tl.float32), w.to(tl.float32), input_precision="ieee")
    else:
        out = tl.dot(a, w, input_precision=PRECISION)
    return out


@triton.jit
def load_f32(ptr, mask):
    return tl.load(ptr, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store(ptr, value, mask):
    tl.store(ptr, value.to(ptr.dtype.element_ty), mask=mask)

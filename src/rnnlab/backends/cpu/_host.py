"""Host code the cpu cell kernels (rnn.py, lstm.py, gru.py) share around their compiled
loops: the carried-state copies, the per-step tensors as rows (:class:`Rows`), running a
kernel over the parts of a batch, and the backward in blocks of time steps with the
GEMMs that turn each block's pre-activation gradients into dx, dW_ih, db (and, through
the cell's own callback, dW_hh). The LSTM and GRU loops take their recurrent dropout and
zoneout masks here (:func:`mask_arrays`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import previous_states, valid_mask, weight_grad, zero_padding
from rnnlab.backends._rows import step_offsets
from rnnlab.backends.contract import Masks, Sequence
from rnnlab.backends.cpu._common import (
    RecurrentWeightGrad,
    add_input_grads,
    as_array,
    optional_array,
    time_blocks,
)
from rnnlab.backends.cpu._parallel import inference_chunk, run_parts


class Rows(NamedTuple):
    """How the kernels of rnn.py, lstm.py and gru.py address a call's per-step tensors: as
    2-D (rows, ·) arrays (:func:`flat`), sample b's row of step t at ``base[t] + b`` — in
    the padded layout (T, B, ·) base[t] = t·B, in the packed one (N, ·) the first row of
    step t (:mod:`rnnlab.backends.contract`), where padding steps have no row."""

    T: int
    B: int
    base: np.ndarray  # (T + 1,) int64; base[T] is the number of rows
    padded: bool  # padding steps have rows (zeroed by the kernels)


def rows_of(seq: Sequence) -> Rows:
    """The :class:`Rows` of a call's sequence."""
    if seq.packed:
        base = step_offsets(seq.lengths).numpy()
        return Rows(base.shape[0] - 1, seq.lengths.shape[0], base, False)
    T, B = seq.x.shape[0], seq.x.shape[1]
    return Rows(T, B, np.arange(T + 1, dtype=np.int64) * B, True)


def flat(t: Tensor) -> np.ndarray:
    """A per-step tensor as the kernels take it: (rows, F), a view of (T, B, F) or of the
    packed (N, F); an empty stand-in stays empty, as (0, 0)."""
    if t.shape[0] == 0:
        return np.empty((0, 0), dtype=t.detach().numpy().dtype)
    a = as_array(t)
    return a.reshape(t.shape[:-1].numel(), a.shape[-1])  # (explicit rows: F may be 0)


def flat_optional(t: Tensor | None, like: Tensor) -> np.ndarray:
    """:func:`flat` of an optional per-step input (the probe): (0, 0) in ``like``'s dtype
    for None."""
    return flat(like.new_empty(0, 0) if t is None else t)


def optional_weight(w: Tensor | None, like: Tensor) -> np.ndarray:
    """A 2-D weight that may be missing (the LSTM projection): empty in ``like``'s dtype."""
    return optional_array(w, 2, like.dtype)


def flat_rows(t: Tensor) -> Tensor:
    """:func:`flat` as a tensor: (T, B, F) or (N, F) -> (rows, F), a view."""
    return t.view(t.shape[:-1].numel(), t.shape[-1])


def state_copy(t: Tensor) -> Tensor:
    """A contiguous copy of a state (B, ·), for a kernel to update in place."""
    return t.detach().clone(memory_format=torch.contiguous_format)


def no_dh(y: Tensor) -> Tensor:
    """The (0, 0, 0) stand-in for dL/dh_t (T, B, P) when it is not asked for."""
    return y.new_empty(0, 0, 0)


def run_kernel(kernel: Callable, arrays: tuple, rows: list[np.ndarray]) -> None:
    """``kernel(*arrays, part)`` for every part of the batch (``rows``, from
    :func:`._parallel.plan`), the parts in parallel."""
    run_parts(lambda part: kernel(*arrays, part), rows)


class InputGrads:
    """dx, dW_ih and db of a cell, summed block by block from the gradients d of the
    input pre-activations x·W_ihᵀ + b. In the padded layout the padding steps of x are
    zeroed one block at a time, in a block-sized copy (d is zero there, but padding may
    hold anything, NaN included): never a second x. Without ``need_dx``, dx is empty and
    its product is not run; with ``dx_into`` (:class:`~rnnlab.backends.contract.AddsInputGrad`)
    dx is added into that tensor."""

    def __init__(self, seq: Sequence, w_ih: Tensor, need_dx: bool,
                 dx_into: Tensor | None = None) -> None:
        x = seq.x
        G, I = w_ih.shape
        self.x = x
        self.valid = None if seq.packed else valid_mask(seq.lengths, x.shape[0])
        self.w_ih, self.need_dx = w_ih, need_dx or dx_into is not None
        self.adding = dx_into is not None
        if dx_into is not None:
            self.dx = dx_into
        else:
            self.dx = torch.empty_like(x) if need_dx else x.new_empty(0)
        self.dw_ih = w_ih.new_zeros(G, I)
        self.db = w_ih.new_zeros(G)

    def add(self, d: Tensor, t0: int, t1: int, r0: int, r1: int) -> None:
        """Add block d (r1 - r0, G) of steps t0 <= t < t1, rows r0 <= r < r1."""
        if self.valid is None or bool(self.valid[t0:t1].all()):
            x = flat_rows(self.x)[r0:r1]
        else:
            x = zero_padding(self.x[t0:t1], self.valid[t0:t1])
        dx = flat_rows(self.dx)[r0:r1] if self.need_dx else None
        add_input_grads(d, x, self.w_ih, dx, self.dw_ih, self.db, self.adding)


class _Previous(NamedTuple):
    """Where the rows r0 <= r < r1 of a packed sequence read their previous state."""

    inner: Tensor  # positions (from r0) whose previous state is an output row...
    source: Tensor  # ...that row
    outer: Tensor  # positions that read the initial state (the sample's first step)...
    sample: Tensor  # ...of that sample


def _previous(seq: Sequence, base: Tensor, t0: int, t1: int, r0: int, r1: int) -> _Previous:
    """The :class:`_Previous` of a packed block: the state read before row (t, b) is the
    output row of b at the neighbouring step in processing order (t ∓ 1), or h0[b] at
    b's first step."""
    lengths = seq.lengths.to(device="cpu", dtype=torch.int64)
    step = torch.repeat_interleave(torch.arange(t0, t1), base[t0 + 1 : t1 + 1] - base[t0:t1])
    sample = torch.arange(r0, r1) - base[step]
    before = step + 1 if seq.reverse else step - 1
    first = (before < 0) | (before >= lengths[sample])
    inner = torch.nonzero(~first).squeeze(1)
    outer = torch.nonzero(first).squeeze(1)
    return _Previous(inner, base[before[inner]] + sample[inner], outer, sample[outer])


def previous_state_rows(seq: Sequence, y: Tensor, h0: Tensor) -> Tensor:
    """For every row of y (rows, H), the state its step read (h_{t-1}): the padded
    layout's :func:`rnnlab.backends._host.previous_states` as rows, or a gather of the
    packed rows."""
    if not seq.packed:
        T = seq.x.shape[0]
        padded = previous_states(y.view(T, -1, y.shape[-1]), h0, seq.lengths, seq.reverse)
        return flat_rows(padded)
    base = torch.from_numpy(rows_of(seq).base)
    where = _previous(seq, base, 0, base.shape[0] - 1, 0, y.shape[0])
    out = torch.empty_like(y)
    out[where.inner] = y.index_select(0, where.source)
    out[where.outer] = h0.index_select(0, where.sample)
    return out


class PackedRecurrentWeightGrad:
    """Σ_t d_tᵀ · h_{t-1} of a packed sequence, block by block (:func:`_previous`): each
    block gathers the states its rows read (a block-sized copy)."""

    def __init__(self, y: Tensor, h0: Tensor, seq: Sequence, rows: Rows) -> None:
        self.y, self.h0, self.seq = y, h0, seq
        self.base = torch.from_numpy(rows.base)
        self.dw: Tensor | None = None

    def add(self, d: Tensor, t0: int, t1: int, r0: int, r1: int) -> None:
        """Add block d (r1 - r0, G) of steps t0 <= t < t1, rows r0 <= r < r1."""
        where = _previous(self.seq, self.base, t0, t1, r0, r1)
        dw = weight_grad(d.index_select(0, where.inner), self.y.index_select(0, where.source))
        if where.outer.numel():
            dw.add_(weight_grad(d.index_select(0, where.outer),
                                self.h0.index_select(0, where.sample)))
        self.dw = dw if self.dw is None else self.dw.add_(dw)

    def result(self) -> Tensor:
        return self.dw


class _PaddedRecurrentWeightGrad(RecurrentWeightGrad):
    """:class:`._common.RecurrentWeightGrad` on blocks of rows of the padded layout."""

    def __init__(self, y: Tensor, h0: Tensor, seq: Sequence, B: int) -> None:
        super().__init__(y.view(-1, B, y.shape[-1]), h0, seq.lengths, seq.reverse)
        self.B = B

    def add(self, d: Tensor, t0: int, t1: int, r0: int, r1: int) -> None:
        super().add(d.view(t1 - t0, self.B, d.shape[-1]), t0, t1)


class BlockSums(NamedTuple):
    """What :func:`backward_in_blocks` sums over the blocks: dx (T, B, I), dW_ih (G, I),
    db (G,) and the recurrent weight's gradient Σ_t d_tᵀ · h_{t-1}."""

    dx: Tensor
    dw_ih: Tensor
    db: Tensor
    dw_hh: Tensor


def backward_in_blocks(
    kernel: Callable, arrays: tuple, rows: list[np.ndarray], seq: Sequence,
    w_ih: Tensor, states: tuple[Tensor, Tensor], widths: tuple[int, ...], dh_seq: Tensor,
    recurrent: Callable[[list[Tensor]], Tensor], need_dx: bool,
    after_block: Callable[[list[Tensor], int, int], None] | None = None,
    before_block: Callable[[int, int], tuple] | None = None, by_rows: bool = False,
    dx_into: Tensor | None = None,
) -> BlockSums:
    """Run a cell's backward kernel over the time blocks of :func:`._common.time_blocks`.

    Per block [t0, t1): ``kernel(*arrays, *inputs, *buffers, dh_seq, t0, t1, part)``,
    ``inputs`` = ``before_block(t0, t1)`` (the block's own arrays, computed before its
    kernel runs; none without ``before_block``), writes one (t1 - t0, B, width) buffer
    per entry of ``widths`` (the first: the input pre-activation gradients; a width of 0
    passes an empty one); the first folds into dx, dW_ih, db, ``recurrent(buffers)``
    (the gradients of h_{t-1}·W_hhᵀ) into the recurrent weight's gradient against the
    states ``states`` = (y, h0), and ``after_block(buffers, t0, t1)`` takes the rest.
    dx is empty unless ``need_dx``; with ``dx_into``, dx is added into it (and it is dx).
    ``by_rows``: the kernel addresses rows (:class:`Rows`; the sequence may be packed):
    buffers (rows of the block, width) and dh_seq (rows, P) go in 2-D, and
    ``after_block`` gets the block's rows [r0, r1) instead of its steps.
    Only one block of gradients exists at a time. ``rows``: the parts of
    :func:`._parallel.plan`.
    """
    x = seq.x
    layout = rows_of(seq)
    T, B, base = layout.T, layout.B, layout.base
    inputs = InputGrads(seq, w_ih, need_dx, dx_into)
    if seq.packed:
        dw_hh = PackedRecurrentWeightGrad(*states, seq, layout)
    else:
        dw_hh = _PaddedRecurrentWeightGrad(*states, seq, B)
    blocks = time_blocks(T, B, seq.reverse)
    size = max(int(base[t1] - base[t0]) for t0, t1 in blocks)
    whole = [x.new_empty(size, width) for width in widths]
    dh_array = flat(dh_seq) if by_rows else dh_seq.numpy()
    with torch.no_grad():
        for t0, t1 in blocks:
            r0, r1 = int(base[t0]), int(base[t1])
            buffers = [buffer[: r1 - r0] for buffer in whole]
            if not by_rows:
                buffers = [b.view(t1 - t0, B, b.shape[-1]) for b in buffers]
            own = () if before_block is None else before_block(t0, t1)
            block_arrays = (*arrays, *own, *(b.numpy() for b in buffers), dh_array, t0, t1)
            run_kernel(kernel, block_arrays, rows)
            inputs.add(flat_rows(buffers[0]), t0, t1, r0, r1)
            dw_hh.add(flat_rows(recurrent(buffers)), t0, t1, r0, r1)
            if after_block is not None:
                after_block(buffers, *((r0, r1) if by_rows else (t0, t1)))
    return BlockSums(inputs.dx, inputs.dw_ih, inputs.db, dw_hh.result())


def first(buffers: list[Tensor]) -> Tensor:
    """The first buffer: for RNN and LSTM the input and the recurrent pre-activations have
    the same gradient."""
    return buffers[0]


def second(buffers: list[Tensor]) -> Tensor:
    """The second buffer: the layer-normalised cells' gradients of W_hh h_{t-1} (their first
    holds those of W_ih x_t, which differ: each projection has its own normalisation)."""
    return buffers[1]


def run_infer(kernel: Callable, arrays: tuple, rows: list[np.ndarray]) -> None:
    """``kernel(*arrays, part, chunk)`` for every part, ``chunk`` the steps each part
    projects at a time (:func:`._parallel.inference_chunk` of its rows)."""
    run_parts(lambda part: kernel(*arrays, part, inference_chunk(part.shape[0])), rows)


class MaskArrays(NamedTuple):
    """The masks of :class:`rnnlab.backends.contract.Masks` as the LSTM and GRU loops
    take them (:mod:`.lstm`, :mod:`.gru`): ``drop_h`` (B, P) or empty (d = 1); each
    zoneout share as an array (T, B, ·), empty when it is one constant, and that
    constant (``p_h``, ``p_c``: the eval form's p, 0 without zoneout) in the kernel's
    dtype. All empty and zero: the plain cell."""

    drop_h: np.ndarray
    keep_h: np.ndarray
    p_h: np.floating
    keep_c: np.ndarray
    p_c: np.floating


def _keep_array(keep: Tensor | None, dtype: torch.dtype) -> tuple[np.ndarray, np.floating]:
    """A zoneout share as (array, constant): a broadcast scalar (every stride 0, the eval
    form's ``p`` expanded) becomes the constant, read once, not a (T, B, ·) copy."""
    scalar = torch.empty(0, dtype=dtype).numpy().dtype.type
    if keep is None:
        return optional_array(None, 3, dtype), scalar(0)
    if keep.numel() > 0 and all(s == 0 for s in keep.stride()):
        return optional_array(None, 3, dtype), scalar(keep[(0,) * keep.dim()].item())
    return as_array(keep), scalar(0)


def mask_arrays(masks: Masks | None, dtype: torch.dtype) -> MaskArrays:
    """The kernels' form of ``masks`` (see :class:`MaskArrays`); None: no masks."""
    if masks is None:
        masks = Masks(None, None, None)
    keep_h, p_h = _keep_array(masks.keep_h, dtype)
    keep_c, p_c = _keep_array(masks.keep_c, dtype)
    return MaskArrays(optional_array(masks.drop_h, 2, dtype), keep_h, p_h, keep_c, p_c)


def dropped(drop_h: Tensor | None, states: Tensor) -> Tensor:
    """d ⊙ states (``states`` itself without recurrent dropout): what the recurrent
    products read, for their weight gradient."""
    return states if drop_h is None else states * drop_h

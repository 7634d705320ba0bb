"""Host code the cpu cell kernels (rnn.py, lstm.py, gru.py) share around their compiled
loops: the carried-state copies, running a kernel over the parts of a batch, and the
backward in blocks of time steps with the GEMMs that turn each block's pre-activation
gradients into dx, dW_ih, db (and, through the cell's own callback, dW_hh). The LSTM and
GRU loops take their recurrent dropout and zoneout masks here (:func:`mask_arrays`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import valid_mask, zero_padding
from rnnlab.backends.contract import Masks, Sequence
from rnnlab.backends.cpu._common import (
    RecurrentWeightGrad,
    add_input_grads,
    as_array,
    optional_array,
    time_blocks,
)
from rnnlab.backends.cpu._parallel import inference_chunk, run_parts


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
    input pre-activations x·W_ihᵀ + b. The padding steps of x are zeroed one block at a
    time, in a block-sized copy (d is zero there, but padding may hold anything, NaN
    included): never a second x. Without ``need_dx``, dx is empty and its product is
    not run."""

    def __init__(self, seq: Sequence, w_ih: Tensor, need_dx: bool) -> None:
        x = seq.x
        G, I = w_ih.shape
        self.x, self.valid = x, valid_mask(seq.lengths, x.shape[0])
        self.w_ih, self.need_dx = w_ih, need_dx
        self.dx = torch.empty_like(x) if need_dx else x.new_empty(0)
        self.dw_ih = w_ih.new_zeros(G, I)
        self.db = w_ih.new_zeros(G)

    def add(self, d: Tensor, t0: int, t1: int) -> None:
        x = self.x[t0:t1]
        if self.valid is not None and not bool(self.valid[t0:t1].all()):
            x = zero_padding(x, self.valid[t0:t1])
        dx = self.dx[t0:t1] if self.need_dx else None
        add_input_grads(d, x, self.w_ih, dx, self.dw_ih, self.db)


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
    before_block: Callable[[int, int], tuple] | None = None,
) -> BlockSums:
    """Run a cell's backward kernel over the time blocks of :func:`._common.time_blocks`.

    Per block [t0, t1): ``kernel(*arrays, *inputs, *buffers, dh_seq, t0, t1, part)``,
    ``inputs`` = ``before_block(t0, t1)`` (the block's own arrays, computed before its
    kernel runs; none without ``before_block``), writes one (t1 - t0, B, width) buffer
    per entry of ``widths`` (the first: the input pre-activation gradients; a width of 0
    passes an empty one); the first folds into dx, dW_ih, db, ``recurrent(buffers)``
    (the gradients of h_{t-1}·W_hhᵀ) into the recurrent weight's gradient against the
    states ``states`` = (y, h0), and ``after_block(buffers, t0, t1)`` takes the rest.
    dx is empty unless ``need_dx``.
    Only one block of gradients exists at a time. ``rows``: the parts of
    :func:`._parallel.plan`.
    """
    x = seq.x
    T, B = x.shape[0], x.shape[1]
    inputs = InputGrads(seq, w_ih, need_dx)
    dw_hh = RecurrentWeightGrad(*states, seq.lengths, seq.reverse)
    blocks = time_blocks(T, B, seq.reverse)
    size = max(t1 - t0 for t0, t1 in blocks)
    whole = [x.new_empty(size, B, width) for width in widths]
    with torch.no_grad():
        for t0, t1 in blocks:
            buffers = [buffer[: t1 - t0] for buffer in whole]
            own = () if before_block is None else before_block(t0, t1)
            block_arrays = (*arrays, *own, *(b.numpy() for b in buffers), dh_seq.numpy(), t0,
                            t1)
            run_kernel(kernel, block_arrays, rows)
            inputs.add(buffers[0], t0, t1)
            dw_hh.add(recurrent(buffers), t0, t1)
            if after_block is not None:
                after_block(buffers, t0, t1)
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

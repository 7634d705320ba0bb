"""The packed row layout of a sequence (:mod:`rnnlab.backends.contract`), and running a
family whose kernels only take the padded (T, B, ·) layout on it.

In the row layout a per-step tensor is (N, F): the rows of step t are those of the
samples still inside their sequence, b < batch_sizes[t] (samples ordered longest
first), at rows offset[t] .. offset[t] + batch_sizes[t] — the layout of
``PackedSequence.data`` in its sorted order. Padding steps have no row, so activations
saved for backward cost N = Σ_b lengths[b] rows instead of T·B.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rnnlab.backends.contract import LSTMState, Sequence

# The fields of the bundles a backend is given (the saved activations) that hold one row
# per step and sample: padded on the way in. (x is the Sequence's; the others are
# states (B, ·) and weights; an LSTMState's c is a state, so state bundles are never
# converted.) Results go back to rows by rank: their per-step tensors are the 3-D ones.
PER_STEP = frozenset({"y", "gates", "c", "h_probe"})


class RowLayout(NamedTuple):
    """Where the rows of a packed sequence sit (``lengths`` non-increasing)."""

    T: int  # steps: the longest length
    B: int  # samples
    offset: Tensor  # (T + 1,) int64 on the CPU: the first row of each step; offset[T] = N
    index: Tensor  # (N,) int64 on the data's device: each row's row t·B + b in (T·B, ·)


def step_offsets(lengths: Tensor) -> Tensor:
    """(T + 1,) int64 on the CPU: the first row of each step of samples with ``lengths``
    (B,), longest first; the last entry is N."""
    lengths = lengths.to(device="cpu", dtype=torch.int64)
    T = int(lengths[0]) if lengths.shape[0] else 0
    sizes = (lengths[None, :] > torch.arange(T)[:, None]).sum(1)  # batch_sizes (T,)
    offset = torch.zeros(T + 1, dtype=torch.int64)
    torch.cumsum(sizes, 0, out=offset[1:])
    return offset


def row_layout(lengths: Tensor, device: torch.device) -> RowLayout:
    """The :class:`RowLayout` of samples with ``lengths`` (B,), longest first."""
    offset = step_offsets(lengths)
    T, B = offset.shape[0] - 1, lengths.shape[0]
    sizes = offset[1:] - offset[:-1]
    step = torch.repeat_interleave(torch.arange(T), sizes)
    sample = torch.arange(step.shape[0]) - offset[step]
    return RowLayout(T, B, offset, (step * B + sample).to(device))


def to_padded(rows: Tensor, layout: RowLayout) -> Tensor:
    """(N, F) rows -> (T, B, F), zeros at padding steps (differentiable)."""
    T, B, index = layout.T, layout.B, layout.index
    width = rows.shape[-1]
    return rows.new_zeros(T * B, width).index_copy(0, index, rows).view(T, B, width)


def to_rows(padded: Tensor, layout: RowLayout) -> Tensor:
    """(T, B, F) -> its (N, F) rows (differentiable)."""
    rows = padded.shape[:-1].numel()  # (explicit: F may be 0)
    return padded.reshape(rows, padded.shape[-1]).index_select(0, layout.index)


def _convert(value: Any, name: str, convert: Callable[[Tensor], Tensor]) -> Any:
    if name not in PER_STEP or not isinstance(value, Tensor) or value.numel() == 0:
        return value
    return convert(value)


def _bundle(value: Any, convert: Callable[[Tensor], Tensor]) -> Any:
    """A contract bundle (a NamedTuple) with its per-step fields converted."""
    fields = getattr(value, "_fields", None)
    if fields is None or isinstance(value, LSTMState):
        return value
    if isinstance(value, Sequence):
        return value._replace(x=convert(value.x))
    return type(value)(*(_convert(v, n, convert) for n, v in zip(fields, value, strict=True)))


def padded_call(run: Callable, seq: Sequence, *args: Any, per_step: tuple[int, ...] = ()):
    """``run(padded seq, *args)`` for a packed ``seq``: the bundles among ``args`` (their
    per-step fields, by name) and the bare tensors at the positions ``per_step`` (counted
    in ``args``) go in padded, and the per-step results come back as rows: every 3-D
    tensor of the result, a (T, B, ·) one (states and weight gradients are 2-D, a
    gradient not asked for is empty)."""
    layout = row_layout(seq.lengths, seq.x.device)

    def padded(t: Tensor) -> Tensor:
        return to_padded(t, layout)

    args = tuple(
        (padded(a) if isinstance(a, Tensor) else a) if i in per_step else _bundle(a, padded)
        for i, a in enumerate(args)
    )
    result = run(_bundle(seq, padded), *args)
    rows = [to_rows(r, layout) if isinstance(r, Tensor) and r.dim() == 3 else r
            for r in result]
    return type(result)(*rows) if hasattr(result, "_fields") else tuple(rows)


class Padded:
    """A family's kernels (:class:`rnnlab.backends.contract.OneStateKernels` or
    :class:`~rnnlab.backends.contract.TwoStateKernels`) that take the padded layout only,
    serving the packed row layout: inputs padded, results back to rows, each call. Exact
    (padding steps are never read and are written as zeros), but the padded tensors cost
    T·B rows: a backend that addresses rows itself declares
    :class:`~rnnlab.backends.contract.PackedRows` instead."""

    def __init__(self, kernels: Any) -> None:
        self.kernels = kernels

    def forward(self, w, seq: Sequence, state, h_probe: Tensor | None, *options):
        return padded_call(lambda s, *a: self.kernels.forward(w, s, *a), seq, state, h_probe,
                           *options, per_step=(1,))

    def backward(self, w, seq: Sequence, state, saved, dy: Tensor, d_state, *flags):
        return padded_call(lambda s, *a: self.kernels.backward(w, s, *a), seq, state, saved,
                           dy, d_state, *flags, per_step=(2,))

    def infer(self, w, seq: Sequence, state, *options):
        return padded_call(lambda s, *a: self.kernels.infer(w, s, *a), seq, state, *options)

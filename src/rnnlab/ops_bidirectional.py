"""Both directions of a bidirectional Elman RNN layer in one op: ``rnnlab::rnn_bidirectional``.

Run as two ops of :mod:`rnnlab.ops`, a bidirectional layer keeps more than its
activations need. Each direction saves its output y for backward, and the layer
concatenates the two into its output (T, B, 2H), which the next layer saves as its
input: y is held twice. In backward each direction returns its own input gradient
(T, B, I), autograd holds the first while the second is made, and adds them. This op
runs both directions and returns the concatenated output itself, which is also all it
saves of them; its backward gives the reverse direction's dx to the forward direction's
backward, which adds into it where the kernels are
:class:`~rnnlab.backends.contract.AddsInputGrad` (the cpu backend; elsewhere the two are
added). A 2-layer bidirectional RNN's training step then peaks lower than torch.nn's
(``benchmarks/results/cpu-avx2-memory-bidirectional.md``).

Only the RNN: one op holds both directions' saved activations until its backward ends,
where two ops free the first direction's once its backward is done. The RNN saves y
alone, which this op shares with the layer's output; the LSTM and GRU save gates 4H
wide and cell states per direction, and as one op they peaked higher (measured
with the same machinery: 2-layer bidirectional, B = 8, T = 200, H = 128, LSTM 26.1 →
27.6 MiB, GRU 23.1 → 24.4), so they keep one op per direction.

Schema (``_reverse``: the reverse direction's arguments, as torch.nn names its
parameters)::

    rnn_bidirectional(x, h0, w_ih, w_hh, b_ih?, b_hh?, h_probe?, h0_reverse,
                      w_ih_reverse, w_hh_reverse, b_ih_reverse?, b_hh_reverse?,
                      h_probe_reverse?, lengths?, relu)
        -> y (T, B, 2H) [forward | reverse], h_n, a, h_n_reverse, a_reverse

Each result equals that of ``rnnlab::rnn`` called with ``reverse`` False and True (dx up
to the rounding of one sum). The layers (:mod:`rnnlab.nn.modules`) call it for a
bidirectional RNN layer whose input needs a gradient (every layer of a stack but the
first) in a differentiable call, except while ``torch.export`` traces (the ONNX
translations know ``rnnlab::rnn``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from rnnlab.backends import differentiable
from rnnlab.backends.contract import AddsInputGrad
from rnnlab.ops import (
    _backend,
    _define_family,
    _for_layout,
    _recomputation,
    _rnn_backward_entry,
    _rnn_entry,
    _rnn_shapes,
)

__all__ = ["rnn_bidirectional", "rnn_bidirectional_backward"]


class BidirectionalRNNForward(NamedTuple):
    y: Tensor  # (T, B, 2H): the forward direction's outputs, then the reverse's
    h_n: Tensor  # (B, H)
    a: Tensor  # (T, B, H), for recording only
    h_n_reverse: Tensor
    a_reverse: Tensor


class BidirectionalRNNGrads(NamedTuple):
    dx: Tensor  # both directions' (one tensor)
    dh0: Tensor
    dw_ih: Tensor
    dw_hh: Tensor
    db: Tensor
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for
    dh0_reverse: Tensor
    dw_ih_reverse: Tensor
    dw_hh_reverse: Tensor
    db_reverse: Tensor
    dh_reverse: Tensor


def _entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None, h_probe: Tensor | None, h0_reverse: Tensor, w_ih_reverse: Tensor,
    w_hh_reverse: Tensor, b_ih_reverse: Tensor | None, b_hh_reverse: Tensor | None,
    h_probe_reverse: Tensor | None, lengths: Tensor | None, relu: bool,
):
    """Elman RNN over a sequence in both directions: returns y (T,B,2H), the forward
    direction's outputs then the reverse's; h_n (B,H), a (T,B,H) of the forward
    direction; h_n_reverse, a_reverse of the reverse one."""
    return (
        _rnn_entry(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, False, relu),
        _rnn_entry(x, h0_reverse, w_ih_reverse, w_hh_reverse, b_ih_reverse, b_hh_reverse,
                   lengths, h_probe_reverse, True, relu),
    )


def _backward_entry(
    dy: Tensor, dh_n: Tensor, dh_n_reverse: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor,
    w_hh: Tensor, h_probe: Tensor | None, h0_reverse: Tensor, w_ih_reverse: Tensor,
    w_hh_reverse: Tensor, h_probe_reverse: Tensor | None, y: Tensor, lengths: Tensor | None,
    relu: bool, need_dh: bool, need_dx: bool,
):
    """Each direction's backward bundles as a function that makes them: its halves of y
    and dy (which autograd may hand over strided: ``contiguous_grads=False``) are copied
    when that direction runs, not both at once."""
    H = h0.shape[-1]
    return (
        lambda: _rnn_backward_entry(dy[..., :H].contiguous(), dh_n.contiguous(), x, h0, w_ih,
                                    w_hh, y[..., :H].contiguous(), h_probe, lengths, False,
                                    relu, need_dh, need_dx),
        lambda: _rnn_backward_entry(dy[..., H:].contiguous(), dh_n_reverse.contiguous(), x,
                                    h0_reverse, w_ih_reverse, w_hh_reverse,
                                    y[..., H:].contiguous(), h_probe_reverse, lengths, True,
                                    relu, need_dh, need_dx),
    )


class _Both:
    """The RNN kernels of :mod:`rnnlab.backends.contract` run for both directions."""

    def __init__(self, kernels: Any) -> None:
        self.kernels = kernels

    def forward(self, ahead: tuple, behind: tuple) -> BidirectionalRNNForward:
        y, h_n, a = self.kernels.forward(*ahead)
        y_reverse, h_n_reverse, a_reverse = self.kernels.forward(*behind)
        return BidirectionalRNNForward(torch.cat((y, y_reverse), dim=-1), h_n, a, h_n_reverse,
                                       a_reverse)

    def backward(self, ahead: Any, behind: Any) -> BidirectionalRNNGrads:
        """``ahead``, ``behind``: functions making each direction's backward bundles
        (:func:`_backward_entry`). The reverse direction runs first; the forward one adds
        its dx into the reverse one's."""
        reverse = self.kernels.backward(*behind())
        bundles = ahead()
        need_dx = bundles[-1]
        if need_dx and isinstance(self.kernels, AddsInputGrad):
            forward = self.kernels.backward(*bundles, dx_into=reverse.dx)
        else:
            forward = self.kernels.backward(*bundles)
            if need_dx:
                forward = forward._replace(dx=forward.dx.add_(reverse.dx))
        return BidirectionalRNNGrads(*forward, *reverse[1:])


def _shapes(named: dict[str, Any]) -> tuple[tuple, ...]:
    """The outputs' shapes (the fake implementation): one direction's, y twice as wide."""
    y, h_n, a = _rnn_shapes(named)
    return (*y[:-1], 2 * y[-1]), h_n, a, h_n, a


_one_direction = _recomputation(differentiable.rnn_outputs, _rnn_entry)


def _recompute(x, h0, w_ih, w_hh, b_ih, b_hh, h_probe, h0_reverse, w_ih_reverse,
               w_hh_reverse, b_ih_reverse, b_hh_reverse, h_probe_reverse, lengths, relu):
    """y and both final states, out of place (double backward)."""
    y, h_n = _one_direction(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h_probe, False, relu)
    y_reverse, h_n_reverse = _one_direction(x, h0_reverse, w_ih_reverse, w_hh_reverse,
                                            b_ih_reverse, b_hh_reverse, lengths,
                                            h_probe_reverse, True, relu)
    return torch.cat((y, y_reverse), dim=-1), h_n, h_n_reverse


rnn_bidirectional, rnn_bidirectional_backward = _define_family(
    "rnn_bidirectional", lambda x: _Both(_for_layout(_backend(x).rnn, x)), _entry,
    _backward_entry, outputs=BidirectionalRNNForward, grads=BidirectionalRNNGrads,
    shapes=_shapes, outputs_of=None, infer=False, recompute=_recompute,
    contiguous_grads=False,
)

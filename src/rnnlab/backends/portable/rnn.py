"""Elman RNN, portable backend.

The equations and their symbols are those of :mod:`rnnlab.reference.rnn`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.backends._host import (
    advance,
    empty_grad,
    parameter_grads,
    project_inputs,
    sum_bias,
    time_steps,
    valid_mask,
    zero_padding,
)
from rnnlab.backends.contract import (
    RNNForward,
    RNNGrads,
    RNNInferByForward,
    RNNSaved,
    RNNWeights,
    Sequence,
    activation_of,
)


class PortableRNN(RNNInferByForward):
    """Elman RNN on torch ops (:class:`rnnlab.backends.contract.RNNKernels`)."""

    def forward(
        self, w: RNNWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None, relu: bool
    ) -> RNNForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T = x.shape[0]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)  # padding is never read, whatever it holds
        ax = project_inputs(x, w_ih, sum_bias(b_ih, b_hh))  # (T, B, H)
        act = torch.relu if relu else torch.tanh
        y = torch.empty_like(ax)
        a_seq = torch.empty_like(ax)
        h = h0
        for t in time_steps(T, reverse):
            a = torch.addmm(ax[t], h, w_hh.t())  # (B, H)
            h, y[t] = advance(act(a), h, valid, t, h_probe)
            a_seq[t] = a if valid is None else torch.where(valid[t], a, 0.0)
        return RNNForward(y, h.clone(), a_seq)

    def backward(
        self, w: RNNWeights, seq: Sequence, h0: Tensor, saved: RNNSaved, dy: Tensor,
        dh_n: Tensor, relu: bool, need_dh: bool, need_dx: bool,
    ) -> RNNGrads:
        (x, lengths, reverse), (w_ih, w_hh), y = seq, (w.w_ih, w.w_hh), saved.y
        T = x.shape[0]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        f_seq = activation_of(saved)  # act(a_t)
        da_seq = torch.empty_like(y)
        dh_seq = torch.empty_like(y) if need_dh else None
        dh_next = dh_n
        for t in reversed(time_steps(T, reverse)):
            dh = dy[t] + dh_next  # total gradient of h_t: from the output and from step t+1
            if relu:
                da = dh * (f_seq[t] > 0)  # relu'(a) = [a > 0] = [f > 0]
            else:
                da = dh * (1 - f_seq[t] * f_seq[t])  # tanh'(a) = 1 - tanh²(a) = 1 - f²
            dh_prev = da @ w_hh  # through a_t = ... + W_hh h_{t-1}
            if valid is None:
                da_seq[t] = da
                dh_next = dh_prev
                if dh_seq is not None:
                    dh_seq[t] = dh
            else:
                m = valid[t]
                da_seq[t] = torch.where(m, da, 0.0)
                dh_next = torch.where(m, dh_prev, dh_next)  # padding: state passes through
                if dh_seq is not None:
                    dh_seq[t] = torch.where(m, dh, 0.0)
        dx, dw_ih, dw_hh, db = parameter_grads(da_seq, x, w_ih, y, h0, lengths, reverse, need_dx)
        dh_out = dh_seq if dh_seq is not None else empty_grad(y)
        return RNNGrads(dx, dh_next.clone(), dw_ih, dw_hh, db, dh_out)

"""LSTM (with optional projection), portable backend.

The equations and their symbols are those of :mod:`rnnlab.reference.lstm`; what the
forward saves, :class:`rnnlab.backends.contract.LSTMForward`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.backends._host import (
    advance,
    empty_grad,
    parameter_grads,
    previous_states,
    project_inputs,
    projection_grad,
    sum_bias,
    time_steps,
    valid_mask,
    zero_padding,
)
from rnnlab.backends.contract import (
    LSTMForward,
    LSTMGrads,
    LSTMInferByForward,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    Sequence,
)


def gate_grads(dc: Tensor, do: Tensor, gates_t: Tensor, c_prev: Tensor, out: Tensor) -> None:
    """One step's ∂L/∂(pre-activations) (B, 4H), into ``out``, from ∂L/∂c_t and ∂L/∂o
    (c = f ⊙ c_prev + i ⊙ g; the LSTM's, and the layer-normalised and masked LSTMs')."""
    i, f, g, o = gates_t.chunk(4, dim=1)
    di = dc * g  # c = f ⊙ c_prev + i ⊙ g
    dg = dc * i
    df = dc * c_prev
    torch.cat(
        [
            di * i * (1 - i),  # σ' = σ(1 - σ)
            df * f * (1 - f),
            dg * (1 - g * g),  # tanh' = 1 - tanh²
            do * o * (1 - o),
        ],
        dim=1,
        out=out,
    )


class PortableLSTM(LSTMInferByForward):
    """LSTM on torch ops (:class:`rnnlab.backends.contract.LSTMKernels`)."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
    ) -> LSTMForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
        T, B, _ = x.shape
        H = c0.shape[-1]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)  # padding is never read, whatever it holds
        gx = project_inputs(x, w_ih, sum_bias(b_ih, b_hh))  # (T, B, 4H)
        y = x.new_empty(T, B, h0.shape[-1])
        gates = torch.empty_like(gx)
        c_seq = x.new_empty(T, B, H)
        h, c = h0, c0
        for t in time_steps(T, reverse):
            act = gates[t]
            torch.addmm(gx[t], h, w_hh.t(), out=act)  # pre-activations (B, 4H)
            act[:, : 2 * H].sigmoid_()  # i, f
            act[:, 2 * H : 3 * H].tanh_()  # g
            act[:, 3 * H :].sigmoid_()  # o
            i, f, g, o = act.chunk(4, dim=1)
            c_t = f * c + i * g
            m_t = o * torch.tanh(c_t)
            h_t = m_t @ w_hr.t() if w_hr is not None else m_t  # (B, P)
            h, y[t] = advance(h_t, h, valid, t, h_probe)
            c, c_seq[t] = advance(c_t, c, valid, t)
            if valid is not None:
                act.masked_fill_(~valid[t], 0.0)
        return LSTMForward(y, h.clone(), c.clone(), gates, c_seq)

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq) = seq, state, saved
        (w_ih, w_hh, w_hr), (dh_n, dc_n) = (w.w_ih, w.w_hh, w.w_hr), d_state
        T = x.shape[0]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        c_prev_seq = previous_states(c_seq, c0, lengths, reverse)
        dgates = torch.empty_like(gates)  # gradients of the pre-activations (T, B, 4H)
        need_dh_seq = need_dh or w_hr is not None
        dh_seq = torch.empty_like(y) if need_dh_seq else None
        dh_next, dc_next = dh_n, dc_n
        for t in reversed(time_steps(T, reverse)):
            _, f, _, o = gates[t].chunk(4, dim=1)
            dh = dy[t] + dh_next  # total gradient of h_t: from the output and from step t+1
            dm = dh @ w_hr if w_hr is not None else dh  # through the projection h = W_hr m
            tanh_c = torch.tanh(c_seq[t])
            do = dm * tanh_c  # m = o ⊙ tanh(c)
            dc = dc_next + dm * o * (1 - tanh_c * tanh_c)  # from h_t and from c_{t+1}
            dpre = dgates[t]
            gate_grads(dc, do, gates[t], c_prev_seq[t], out=dpre)
            dh_prev = dpre @ w_hh  # through W_hh h_{t-1}
            dc_prev = dc * f
            if valid is None:
                dh_next, dc_next = dh_prev, dc_prev
                if dh_seq is not None:
                    dh_seq[t] = dh
            else:
                m = valid[t]
                dpre.masked_fill_(~m, 0.0)
                dh_next = torch.where(m, dh_prev, dh_next)  # padding: state passes through
                dc_next = torch.where(m, dc_prev, dc_next)
                if dh_seq is not None:
                    dh_seq[t] = torch.where(m, dh, 0.0)
        dx, dw_ih, dw_hh, db = parameter_grads(dgates, x, w_ih, y, h0, lengths, reverse, need_dx)
        dw_hr = projection_grad(dh_seq, gates, c_seq) if w_hr is not None else empty_grad(y)
        dh_out = dh_seq if need_dh else empty_grad(y)
        return LSTMGrads(dx, dh_next.clone(), dc_next.clone(), dw_ih, dw_hh, db, dw_hr, dh_out)

"""Layer-normalised LSTM, portable backend.

The equations and their symbols are those of :mod:`rnnlab.reference.lnlstm`: a_t =
LN(W_ih x_t; γ_ih) + b_ih + LN(W_hh h_{t-1}; γ_hh) + b_hh, the LSTM's gates and cell,
h_t = o_t ⊙ tanh(n_t) with n_t = LN(c_t; γ_c, β_c).

Saved for backward (and exposed for gate recording), as for the LSTM: the activated
gates (T,B,4H) and the cell states c_t (T,B,H), zero at padding steps. Backward
recomputes the three normalisations from them, x and y (two GEMMs over all steps and
pointwise work), so nothing more is kept between forward and backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    input_grad,
    previous_states,
    project_inputs,
    sum_bias,
    time_steps,
    valid_mask,
    weight_grad,
    zero_padding,
)
from rnnlab.backends._layer_norm import EPS, normalise, normalise_backward
from rnnlab.backends.contract import (
    LNLSTMGrads,
    LNLSTMWeights,
    LSTMForward,
    LSTMInferByForward,
    LSTMSaved,
    LSTMState,
    Sequence,
)
from rnnlab.backends.portable.lstm import gate_grads


class PortableLNLSTM(LSTMInferByForward):
    """Layer-normalised LSTM on torch ops (:class:`rnnlab.backends.contract.LNLSTMKernels`)."""

    def forward(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
    ) -> LSTMForward:
        (x, lengths, reverse), (h0, c0) = seq, state
        T, B, _ = x.shape
        H = c0.shape[-1]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)  # padding is never read, whatever it holds
        # LN(W_ih x_t; γ_ih) + b_ih + b_hh for all steps (the biases are the β of the LNs)
        gx = F.layer_norm(
            project_inputs(x, w.w_ih, None), (4 * H,), w.gamma_ih, sum_bias(w.b_ih, w.b_hh), EPS
        )
        y = x.new_empty(T, B, H)
        gates = torch.empty_like(gx)
        c_seq = x.new_empty(T, B, H)
        h, c = h0, c0
        for t in time_steps(T, reverse):
            act = gates[t]
            torch.add(gx[t], F.layer_norm(h @ w.w_hh.t(), (4 * H,), w.gamma_hh, None, EPS),
                      out=act)  # pre-activations (B, 4H)
            act[:, : 2 * H].sigmoid_()  # i, f
            act[:, 2 * H : 3 * H].tanh_()  # g
            act[:, 3 * H :].sigmoid_()  # o
            i, f, g, o = act.chunk(4, dim=1)
            c_t = f * c + i * g
            h_t = o * torch.tanh(F.layer_norm(c_t, (H,), w.gamma_c, w.beta_c, EPS))
            if h_probe is not None:
                h_t = h_t + h_probe[t]
            if valid is None:
                h, c = h_t, c_t
                y[t] = h_t
                c_seq[t] = c_t
            else:
                m = valid[t]
                h = torch.where(m, h_t, h)
                c = torch.where(m, c_t, c)
                y[t] = torch.where(m, h_t, 0.0)
                c_seq[t] = torch.where(m, c_t, 0.0)
                act.masked_fill_(~m, 0.0)
        return LSTMForward(y, h.clone(), c.clone(), gates, c_seq)

    def backward(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LNLSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq) = seq, state, saved
        (dh_n, dc_n) = d_state
        T = x.shape[0]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        h_prev_seq = previous_states(y, h0, lengths, reverse)
        c_prev_seq = previous_states(c_seq, c0, lengths, reverse)
        v_ih, rstd_ih = normalise(project_inputs(x, w.w_ih, None))  # (T, B, 4H)
        v_hh, rstd_hh = normalise(project_inputs(h_prev_seq, w.w_hh, None))
        c_hat, rstd_c = normalise(c_seq)  # (T, B, H); 0 at padding (c_seq is)
        n_seq = c_hat * w.gamma_c if w.beta_c is None else torch.addcmul(w.beta_c, c_hat, w.gamma_c)
        tanh_n_seq = torch.tanh(n_seq)
        dgates = torch.empty_like(gates)  # gradients of the pre-activations a_t (T, B, 4H)
        dp_hh_seq = torch.empty_like(gates)  # gradients of W_hh h_{t-1}
        dn_seq = torch.empty_like(c_seq)  # gradients of n_t
        dh_seq = torch.empty_like(y) if need_dh else None
        dh_next, dc_next = dh_n, dc_n
        for t in reversed(time_steps(T, reverse)):
            _, f, _, o = gates[t].chunk(4, dim=1)
            tanh_n = tanh_n_seq[t]
            dh = dy[t] + dh_next  # total gradient of h_t: from the output and from step t+1
            do = dh * tanh_n  # h = o ⊙ tanh(n)
            dn = dn_seq[t]
            torch.mul(dh * o, 1 - tanh_n * tanh_n, out=dn)
            # from c_{t+1} and through n_t = LN(c_t)
            dc = dc_next + normalise_backward(dn * w.gamma_c, c_hat[t], rstd_c[t])
            dpre = dgates[t]
            gate_grads(dc, do, gates[t], c_prev_seq[t], out=dpre)
            if valid is not None:
                m = valid[t]
                dpre.masked_fill_(~m, 0.0)
                dn.masked_fill_(~m, 0.0)
            dp_hh = dp_hh_seq[t]
            dp_hh.copy_(normalise_backward(dpre * w.gamma_hh, v_hh[t], rstd_hh[t]))
            dh_prev = dp_hh @ w.w_hh  # through W_hh h_{t-1}
            dc_prev = dc * f
            if valid is None:
                dh_next, dc_next = dh_prev, dc_prev
                if dh_seq is not None:
                    dh_seq[t] = dh
            else:
                dh_next = torch.where(m, dh_prev, dh_next)  # padding: state passes through
                dc_next = torch.where(m, dc_prev, dc_next)
                if dh_seq is not None:
                    dh_seq[t] = torch.where(m, dh, 0.0)
        dp_ih = normalise_backward(dgates * w.gamma_ih, v_ih, rstd_ih)  # all steps at once
        return LNLSTMGrads(
            dx=input_grad(dp_ih, w.w_ih, need_dx),
            dh0=dh_next.clone(),
            dc0=dc_next.clone(),
            dw_ih=weight_grad(dp_ih, x),
            dw_hh=weight_grad(dp_hh_seq, h_prev_seq),
            db=dgates.sum(dim=(0, 1)),
            dgamma_ih=(dgates * v_ih).sum(dim=(0, 1)),
            dgamma_hh=(dgates * v_hh).sum(dim=(0, 1)),
            dgamma_c=(dn_seq * c_hat).sum(dim=(0, 1)),
            dbeta_c=dn_seq.sum(dim=(0, 1)) if w.beta_c is not None else empty_grad(y),
            dh=dh_seq if need_dh else empty_grad(y),
        )

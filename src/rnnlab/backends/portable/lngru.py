"""Layer-normalised GRU, portable backend.

The equations and their symbols are those of :mod:`rnnlab.reference.lngru`: u_t =
LN(W_ih x_t; γ_ih) + b_ih, v_t = LN(W_hh h_{t-1}; γ_hh) + b_hh, then torch.nn's GRU step
(reset after the recurrent product) on u_t and v_t.

Saved for backward (and exposed for gate recording), as for the GRU: the activated gates
r, z, n and the candidate's recurrent term hn = v_n (T,B,4H), zero at padding steps.
Backward recomputes the two normalisations from x and y (one GEMM each over all steps).
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
    time_steps,
    valid_mask,
    weight_grad,
    zero_padding,
)
from rnnlab.backends._layer_norm import EPS, normalise, normalise_backward
from rnnlab.backends.contract import (
    GRUForward,
    GRUSaved,
    LNGRUGrads,
    LNGRUInferByForward,
    LNGRUWeights,
    Sequence,
)


class PortableLNGRU(LNGRUInferByForward):
    """Layer-normalised GRU on torch ops (:class:`rnnlab.backends.contract.LNGRUKernels`)."""

    def forward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None
    ) -> GRUForward:
        x, lengths, reverse = seq
        T, B, _ = x.shape
        H = h0.shape[-1]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)  # padding is never read, whatever it holds
        gx = F.layer_norm(project_inputs(x, w.w_ih, None), (3 * H,), w.gamma_ih, w.b_ih, EPS)
        y = x.new_empty(T, B, H)
        gates = x.new_empty(T, B, 4 * H)
        h = h0
        for t in time_steps(T, reverse):
            gh = F.layer_norm(h @ w.w_hh.t(), (3 * H,), w.gamma_hh, w.b_hh, EPS)  # v_t (B, 3H)
            act = gates[t]
            r, z, n, hn = act.chunk(4, dim=1)
            act[:, : 2 * H] = torch.sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H])  # r, z
            hn.copy_(gh[:, 2 * H :])
            n.copy_(torch.tanh(torch.addcmul(gx[t, :, 2 * H :], r, hn)))
            h_t = n + z * (h - n)
            if h_probe is not None:
                h_t = h_t + h_probe[t]
            if valid is None:
                h = h_t
                y[t] = h_t
            else:
                m = valid[t]
                h = torch.where(m, h_t, h)
                y[t] = torch.where(m, h_t, 0.0)
                act.masked_fill_(~m, 0.0)
        return GRUForward(y, h.clone(), gates)

    def backward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, need_dh: bool, need_dx: bool,
    ) -> LNGRUGrads:
        (x, lengths, reverse), (y, gates) = seq, saved
        T, H = x.shape[0], h0.shape[-1]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        h_prev_seq = previous_states(y, h0, lengths, reverse)
        v_ih, rstd_ih = normalise(project_inputs(x, w.w_ih, None))  # (T, B, 3H)
        v_hh, rstd_hh = normalise(project_inputs(h_prev_seq, w.w_hh, None))
        du_seq = x.new_empty(T, x.shape[1], 3 * H)  # gradients of u_t
        dv_seq = torch.empty_like(du_seq)  # gradients of v_t
        dp_hh_seq = torch.empty_like(du_seq)  # gradients of W_hh h_{t-1}
        dh_seq = torch.empty_like(y) if need_dh else None
        dh_next = dh_n
        for t in reversed(time_steps(T, reverse)):
            r, z, n, hn = gates[t].chunk(4, dim=1)
            dh = dy[t] + dh_next  # total gradient of h_t: from the output and from step t+1
            dn = dh * (1 - z)  # h = (1 - z) ⊙ n + z ⊙ h_prev
            dz = dh * (h_prev_seq[t] - n)
            da_n = dn * (1 - n * n)  # n = tanh(u_n + r ⊙ hn)
            du, dv = du_seq[t], dv_seq[t]
            torch.cat([da_n * hn * r * (1 - r), dz * z * (1 - z), da_n], dim=1, out=du)
            torch.cat([du[:, : 2 * H], da_n * r], dim=1, out=dv)
            if valid is not None:
                m = valid[t]
                du.masked_fill_(~m, 0.0)
                dv.masked_fill_(~m, 0.0)
            dp_hh = dp_hh_seq[t]
            dp_hh.copy_(normalise_backward(dv * w.gamma_hh, v_hh[t], rstd_hh[t]))
            dh_prev = dh * z + dp_hh @ w.w_hh  # directly and through W_hh h_{t-1}
            if valid is None:
                dh_next = dh_prev
                if dh_seq is not None:
                    dh_seq[t] = dh
            else:
                dh_next = torch.where(m, dh_prev, dh_next)  # padding: state passes through
                if dh_seq is not None:
                    dh_seq[t] = torch.where(m, dh, 0.0)
        dp_ih = normalise_backward(du_seq * w.gamma_ih, v_ih, rstd_ih)  # all steps at once
        return LNGRUGrads(
            dx=input_grad(dp_ih, w.w_ih, need_dx),
            dh0=dh_next.clone(),
            dw_ih=weight_grad(dp_ih, x),
            dw_hh=weight_grad(dp_hh_seq, h_prev_seq),
            db_ih=du_seq.sum(dim=(0, 1)),
            db_hh=dv_seq.sum(dim=(0, 1)),
            dgamma_ih=(du_seq * v_ih).sum(dim=(0, 1)),
            dgamma_hh=(dv_seq * v_hh).sum(dim=(0, 1)),
            dh=dh_seq if need_dh else empty_grad(y),
        )

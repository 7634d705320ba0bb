"""GRU, portable backend, both placements of the reset gate.

The equations and their symbols are those of :mod:`rnnlab.reference.gru`; what the
forward saves, :class:`rnnlab.backends.contract.GRUForward`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.backends._host import (
    advance,
    empty_grad,
    gru_parameter_grads,
    previous_states,
    project_inputs,
    time_steps,
    valid_mask,
    zero_padding,
)
from rnnlab.backends.contract import (
    GRUForward,
    GRUGrads,
    GRUInferByForward,
    GRUSaved,
    GRUWeights,
    Sequence,
)


class PortableGRU(GRUInferByForward):
    """GRU on torch ops (:class:`rnnlab.backends.contract.GRUKernels`)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, _ = x.shape
        H = h0.shape[-1]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)  # padding is never read, whatever it holds
        gx = project_inputs(x, w_ih, b_ih)  # (T, B, 3H)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        b_rz = b_hh[: 2 * H] if b_hh is not None else None
        b_n = b_hh[2 * H :] if b_hh is not None else None
        y = torch.empty_like(gx[..., :H])
        gates = x.new_empty(T, B, 4 * H)
        h = h0
        for t in time_steps(T, reverse):
            act = gates[t]
            r, z, n, hn = act.chunk(4, dim=1)
            if reset_after:
                gh = torch.addmm(b_hh, h, w_hh.t()) if b_hh is not None else h @ w_hh.t()  # (B, 3H)
                torch.sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H], out=act[:, : 2 * H])
                hn.copy_(gh[:, 2 * H :])
                torch.tanh(gx[t, :, 2 * H :] + r * hn, out=n)
            else:
                g_rz = torch.addmm(b_rz, h, w_rz.t()) if b_rz is not None else h @ w_rz.t()
                torch.sigmoid(gx[t, :, : 2 * H] + g_rz, out=act[:, : 2 * H])
                rh = r * h
                if b_n is not None:
                    torch.addmm(b_n, rh, w_n.t(), out=hn)
                else:
                    torch.mm(rh, w_n.t(), out=hn)
                torch.tanh(gx[t, :, 2 * H :] + hn, out=n)
            h, y[t] = advance(n + z * (h - n), h, valid, t, h_probe)
            if valid is not None:
                act.masked_fill_(~valid[t], 0.0)
        return GRUForward(y, h.clone(), gates)

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
    ) -> GRUGrads:
        (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
        T = x.shape[0]
        H = h0.shape[-1]
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        h_prev_seq = previous_states(y, h0, lengths, reverse)
        dgx = x.new_empty(T, x.shape[1], 3 * H)  # gradients of the input pre-activations
        dh_seq = torch.empty_like(y) if need_dh else None
        dh_next = dh_n
        for t in reversed(time_steps(T, reverse)):
            r, z, n, hn = gates[t].chunk(4, dim=1)
            h_prev = h_prev_seq[t]
            dh = dy[t] + dh_next  # total gradient of h_t: from the output and from step t+1
            dn = dh * (1 - z)  # h = (1 - z) ⊙ n + z ⊙ h_prev
            dz = dh * (h_prev - n)
            dn_pre = dn * (1 - n * n)  # tanh' = 1 - tanh²
            dz_pre = dz * z * (1 - z)  # σ' = σ(1 - σ)
            if reset_after:
                dr = dn_pre * hn  # n = tanh(... + r ⊙ hn)
                dr_pre = dr * r * (1 - r)
                dgh = torch.cat([dr_pre, dz_pre, dn_pre * r], dim=1)  # recurrent pre-activations
                dh_prev = dh * z + dgh @ w_hh
            else:
                drh = dn_pre @ w_n  # n = tanh(... + W_hn (r ⊙ h_prev) + b_hn)
                dr_pre = drh * h_prev * r * (1 - r)
                dh_prev = dh * z + torch.cat([dr_pre, dz_pre], dim=1) @ w_rz + drh * r
            dgx_t = dgx[t]
            torch.cat([dr_pre, dz_pre, dn_pre], dim=1, out=dgx_t)
            if valid is None:
                dh_next = dh_prev
                if dh_seq is not None:
                    dh_seq[t] = dh
            else:
                m = valid[t]
                dgx_t.masked_fill_(~m, 0.0)
                dh_next = torch.where(m, dh_prev, dh_next)  # padding: state passes through
                if dh_seq is not None:
                    dh_seq[t] = torch.where(m, dh, 0.0)
        dx, dw_ih, dw_hh, db_ih, db_hh = gru_parameter_grads(
            dgx, x, w_ih, h_prev_seq, gates, reset_after, need_dx
        )
        dh_out = dh_seq if need_dh else empty_grad(y)
        return GRUGrads(dx, dh_next.clone(), dw_ih, dw_hh, db_ih, db_hh, dh_out)

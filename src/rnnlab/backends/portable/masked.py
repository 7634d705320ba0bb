"""LSTM and GRU with recurrent dropout and zoneout, portable backend.

The equations and symbols are those of :mod:`rnnlab.reference.lstm_masked` and
:mod:`rnnlab.reference.gru_masked` (d the recurrent dropout multiplier, k the zoneout
share, u_{t-1} = d ⊙ h_{t-1} what the recurrent products read). The forward passes are
written out of place, so they are also the differentiable recomputation behind double
backward (:mod:`rnnlab.ops_masked`). Saved: as the plain families, and for the LSTM c̃_t
(the cell candidate before zoneout) besides c_t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    gru_parameter_grads,
    input_grad,
    previous_states,
    project_inputs,
    sum_bias,
    time_steps,
    valid_mask,
    weight_grad,
    zero_padding,
)
from rnnlab.backends.contract import (
    GRUForward,
    GRUGrads,
    GRUSaved,
    GRUWeights,
    LSTMGrads,
    LSTMState,
    LSTMWeights,
    MaskedLSTMForward,
    MaskedLSTMSaved,
    Masks,
    Sequence,
)
from rnnlab.backends.portable.lstm import gate_grads

__all__ = ["PortableMaskedGRU", "PortableMaskedLSTM"]


def _zone(keep: Tensor | None, t: int, previous: Tensor, new: Tensor) -> Tensor:
    """k_t ⊙ previous + (1 - k_t) ⊙ new, as new + k_t ⊙ (previous - new) in one op (new
    itself without zoneout)."""
    return new if keep is None else torch.lerp(new, previous, keep[t])


def _unzone(keep: Tensor | None, t: int, grad: Tensor) -> tuple[Tensor, Tensor | float]:
    """A state's gradient split into the shares that reach its candidate, (1 - k_t) ⊙ grad,
    and the previous state directly, k_t ⊙ grad (all and nothing without zoneout)."""
    if keep is None:
        return grad, 0.0
    carried = keep[t] * grad
    return grad - carried, carried


def _dropped(drop: Tensor | None, h: Tensor) -> Tensor:
    """d ⊙ h (h itself without recurrent dropout)."""
    return h if drop is None else drop * h


class PortableMaskedLSTM:
    """:class:`rnnlab.backends.contract.MaskedLSTMKernels` on torch ops."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        h_probe: Tensor | None,
    ) -> MaskedLSTMForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
        drop, keep_h, keep_c = masks
        T, H = x.shape[0], c0.shape[-1]
        valid = valid_mask(lengths, T)
        gx = project_inputs(zero_padding(x, valid), w_ih, sum_bias(b_ih, b_hh))  # (T, B, 4H)
        ys, gates, cs, c_tildes = ([None] * T for _ in range(4))
        h, c = h0, c0
        for t in time_steps(T, reverse):
            a = torch.addmm(gx[t], _dropped(drop, h), w_hh.t())  # (B, 4H)
            act = torch.cat(
                [a[:, : 2 * H].sigmoid(), a[:, 2 * H : 3 * H].tanh(), a[:, 3 * H :].sigmoid()],
                dim=1,
            )
            i, f, g, o = act.chunk(4, dim=1)
            c_tilde = torch.addcmul(f * c, i, g)
            m_t = o * torch.tanh(c_tilde)
            h_tilde = m_t @ w_hr.t() if w_hr is not None else m_t  # (B, P)
            c_t = _zone(keep_c, t, c, c_tilde)
            h_t = _zone(keep_h, t, h, h_tilde)
            if h_probe is not None:
                h_t = h_t + h_probe[t]
            if valid is not None:
                v = valid[t]
                h, c = torch.where(v, h_t, h), torch.where(v, c_t, c)
                h_t, c_t, act, c_tilde = (torch.where(v, value, 0.0)
                                          for value in (h_t, c_t, act, c_tilde))
            else:
                h, c = h_t, c_t
            ys[t], gates[t], cs[t], c_tildes[t] = h_t, act, c_t, c_tilde
        return MaskedLSTMForward(
            torch.stack(ys), h.clone(), c.clone(), torch.stack(gates), torch.stack(cs),
            torch.stack(c_tildes),
        )

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        saved: MaskedLSTMSaved, dy: Tensor, d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq, c_tilde_seq) = seq, state, saved
        (w_ih, w_hh, w_hr), (dh_n, dc_n) = (w.w_ih, w.w_hh, w.w_hr), d_state
        drop, keep_h, keep_c = masks
        T, H = x.shape[0], c0.shape[-1]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        c_prev_seq = previous_states(c_seq, c0, lengths, reverse)
        dgates = torch.empty_like(gates)  # gradients of the pre-activations (T, B, 4H)
        dh_seq = torch.empty_like(y) if need_dh else None
        dh_tilde_seq = torch.empty_like(y) if w_hr is not None else None
        dh_next, dc_next = dh_n, dc_n
        for t in reversed(time_steps(T, reverse)):
            _, f, _, o = gates[t].chunk(4, dim=1)
            dh = dy[t] + dh_next  # total ∂L/∂h_t: from the output and from step t+1
            dc = dc_next
            dh_tilde, dh_carried = _unzone(keep_h, t, dh)
            dc_tilde, dc_carried = _unzone(keep_c, t, dc)
            dm = dh_tilde @ w_hr if w_hr is not None else dh_tilde
            tanh_c = torch.tanh(c_tilde_seq[t])
            do = dm * tanh_c  # m = o ⊙ tanh(c̃)
            dc_tilde = dc_tilde + dm * o * (1 - tanh_c * tanh_c)
            dpre = dgates[t]
            gate_grads(dc_tilde, do, gates[t], c_prev_seq[t], out=dpre)
            dh_prev = _dropped(drop, dpre @ w_hh) + dh_carried
            dc_prev = f * dc_tilde + dc_carried
            if valid is not None:
                v = valid[t]
                dpre.masked_fill_(~v, 0.0)
                dh_prev = torch.where(v, dh_prev, dh_next)  # padding: states pass through
                dc_prev = torch.where(v, dc_prev, dc_next)
                dh, dh_tilde = torch.where(v, dh, 0.0), torch.where(v, dh_tilde, 0.0)
            dh_next, dc_next = dh_prev, dc_prev
            if dh_seq is not None:
                dh_seq[t] = dh
            if dh_tilde_seq is not None:
                dh_tilde_seq[t] = dh_tilde
        u_seq = _dropped(drop, previous_states(y, h0, lengths, reverse))
        dx = input_grad(dgates, w_ih, need_dx)
        dw_ih = weight_grad(dgates, x)
        dw_hh = weight_grad(dgates, u_seq)
        db = dgates.sum(dim=(0, 1))
        if w_hr is not None:
            m_seq = gates[..., 3 * H :] * torch.tanh(c_tilde_seq)  # m_t = o ⊙ tanh(c̃_t)
            dw_hr = weight_grad(dh_tilde_seq, m_seq)
        else:
            dw_hr = empty_grad(y)
        dh_out = dh_seq if need_dh else empty_grad(y)
        return LSTMGrads(dx, dh_next.clone(), dc_next.clone(), dw_ih, dw_hh, db, dw_hr, dh_out)


class PortableMaskedGRU:
    """:class:`rnnlab.backends.contract.MaskedGRUKernels` on torch ops."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        drop, keep_h, _ = masks
        T, H = x.shape[0], h0.shape[-1]
        valid = valid_mask(lengths, T)
        gx = project_inputs(zero_padding(x, valid), w_ih, b_ih)  # (T, B, 3H)
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        b_rz, b_n = (None, None) if b_hh is None else (b_hh[: 2 * H], b_hh[2 * H :])
        ys, gates = [None] * T, [None] * T
        h = h0
        for t in time_steps(T, reverse):
            u = _dropped(drop, h)
            if reset_after:
                gh = u @ w_hh.t() if b_hh is None else torch.addmm(b_hh, u, w_hh.t())
                r, z = torch.sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H]).chunk(2, dim=1)
                hn = gh[:, 2 * H :]
                n = torch.tanh(gx[t, :, 2 * H :] + r * hn)
            else:
                g_rz = u @ w_rz.t() if b_rz is None else torch.addmm(b_rz, u, w_rz.t())
                r, z = torch.sigmoid(gx[t, :, : 2 * H] + g_rz).chunk(2, dim=1)
                hn = (r * u) @ w_n.t() if b_n is None else torch.addmm(b_n, r * u, w_n.t())
                n = torch.tanh(gx[t, :, 2 * H :] + hn)
            h_t = _zone(keep_h, t, h, torch.lerp(n, h, z))  # h̃ = (1 - z) ⊙ n + z ⊙ h_{t-1}
            if h_probe is not None:
                h_t = h_t + h_probe[t]
            act = torch.cat([r, z, n, hn], dim=1)
            if valid is not None:
                v = valid[t]
                h = torch.where(v, h_t, h)
                h_t, act = torch.where(v, h_t, 0.0), torch.where(v, act, 0.0)
            else:
                h = h_t
            ys[t], gates[t] = h_t, act
        return GRUForward(torch.stack(ys), h.clone(), torch.stack(gates))

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, saved: GRUSaved,
        dy: Tensor, dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
    ) -> GRUGrads:
        (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
        drop, keep_h, _ = masks
        T, H = x.shape[0], h0.shape[-1]
        w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H :]
        valid = valid_mask(lengths, T)
        x = zero_padding(x, valid)
        h_prev_seq = previous_states(y, h0, lengths, reverse)
        u_seq = _dropped(drop, h_prev_seq)
        dgx = x.new_empty(T, x.shape[1], 3 * H)  # gradients of the input pre-activations
        dh_seq = torch.empty_like(y) if need_dh else None
        dh_next = dh_n
        for t in reversed(time_steps(T, reverse)):
            r, z, n, hn = gates[t].chunk(4, dim=1)
            h_prev, u = h_prev_seq[t], u_seq[t]
            dh = dy[t] + dh_next
            dh_tilde, dh_carried = _unzone(keep_h, t, dh)
            dn_pre = dh_tilde * (1 - z) * (1 - n * n)
            dz_pre = dh_tilde * (h_prev - n) * z * (1 - z)
            if reset_after:
                dr_pre = dn_pre * hn * r * (1 - r)  # n = tanh(... + r ⊙ hn)
                du = torch.cat([dr_pre, dz_pre, dn_pre * r], dim=1) @ w_hh
            else:
                dru = dn_pre @ w_n  # n = tanh(... + W_hn (r ⊙ u) + b_hn)
                dr_pre = dru * u * r * (1 - r)
                du = torch.cat([dr_pre, dz_pre], dim=1) @ w_rz + dru * r
            dh_prev = dh_tilde * z + _dropped(drop, du) + dh_carried
            dgx_t = dgx[t]
            torch.cat([dr_pre, dz_pre, dn_pre], dim=1, out=dgx_t)
            if valid is not None:
                v = valid[t]
                dgx_t.masked_fill_(~v, 0.0)
                dh_prev, dh = torch.where(v, dh_prev, dh_next), torch.where(v, dh, 0.0)
            dh_next = dh_prev
            if dh_seq is not None:
                dh_seq[t] = dh
        dx, dw_ih, dw_hh, db_ih, db_hh = gru_parameter_grads(
            dgx, x, w_ih, u_seq, gates, reset_after, need_dx
        )
        dh_out = dh_seq if need_dh else empty_grad(y)
        return GRUGrads(dx, dh_next.clone(), dw_ih, dw_hh, db_ih, db_hh, dh_out)

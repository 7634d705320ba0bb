"""GRU with recurrent dropout and zoneout, cpu backend, both placements of the reset gate:
the whole sequence in one compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.gru_masked` (d the
recurrent dropout multiplier, u_{t-1} = d ⊙ h_{t-1} what the recurrent products read,
k the zoneout share). The loops are :mod:`.gru`'s with the masks added, and reuse its
per-sample passes: the products read u_{t-1}, the update h̃_t reads h_{t-1} itself, then
zoneout mixes h_{t-1} and h̃_t. Masks as in :class:`._host.MaskArrays`. Saved: gates
(T,B,4H) = [r, z, n, hn], hn = W_hn u_{t-1} + b_hn (reset after) or W_hn (r ⊙ u_{t-1}) +
b_hn, zero at padding (:class:`rnnlab.backends.contract.MaskedGRUKernels`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import empty_grad, previous_states, weight_grad
from rnnlab.backends.contract import GRUForward, GRUGrads, GRUSaved, GRUWeights, Masks, Sequence
from rnnlab.backends.cpu import _host
from rnnlab.backends.cpu._blas import matmul, prepare
from rnnlab.backends.cpu._common import (
    as_array,
    bias_array,
    lengths_array,
    optional_array,
    project_into,
)
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one
from rnnlab.backends.cpu._parallel import clear_padding, plan, valid_prefix
from rnnlab.backends.cpu.gru import (
    _candidate,
    _hn_end,
    _reset_backward,
    _reset_times_state,
    _rz,
    _step_backward,
)
from rnnlab.backends.cpu.masked_lstm import _dropped, _keep_row, _unzone

__all__ = ["CpuMaskedGRU"]


@kernel(**KERNEL_OPTIONS)
def _update(act, h, keep, probe, y):
    """h̃ = (1 - z) ⊙ n + z ⊙ h_{t-1}, h_t = k ⊙ h_{t-1} + (1 - k) ⊙ h̃ (k = ``keep``),
    + probe when not empty, into h and y."""
    H = h.shape[0]
    u = one(act)
    for j in range(H):
        n = act[2 * H + j]
        h_tilde = n + act[H + j] * (h[j] - n)
        k = keep[j]
        h[j] = k * h[j] + (u - k) * h_tilde
    if probe.shape[0] > 0:
        for j in range(H):
            h[j] += probe[j]
    y[:] = h


@kernel(**KERNEL_OPTIONS)
def _state_backward(dh, dh_tilde, z, du, drh, r, drop, reset_after):
    """dL/dh_{t-1} = k ⊙ dh_t (in ``dh`` on entry) + z ⊙ dh̃_t + d ⊙ du_t, du_t the
    product through W_hh [+ r ⊙ drh, reset before]; d = 1 when ``drop`` is empty."""
    u = one(dh)
    for j in range(dh.shape[0]):
        d_u = du[j] if reset_after else du[j] + drh[j] * r[j]
        d = drop[j] if drop.shape[0] > 0 else u
        dh[j] = dh[j] + z[j] * dh_tilde[j] + d * d_u


@kernel(**KERNEL_OPTIONS)
def _forward(gates, y, h, w_hh, b_hh, lengths, probe, drop, keep_h, p_h, reverse, reset_after,
             rows):
    """Batch rows ``rows`` (longest first) of the sequence, as :func:`.gru._forward`:
    gates (T,B,4H) holds x·W_ihᵀ + b_ih in [..., :3H] on entry, [r, z, n, hn] on exit;
    y (T,B,H) ← outputs; h (B,H) holds h0 on entry and h_n on exit."""
    T = gates.shape[0]
    H = gates.shape[2] // 4
    G = 3 * H
    n = rows.shape[0]
    dtype = gates.dtype
    dropping = drop.shape[0] > 0
    bias = np.zeros(G, dtype=dtype)
    if b_hh.shape[0] > 0:
        bias[:] = b_hh
    if reset_after:
        hh_op = prepare(w_hh, n, True)  # u (n,H) · W_hhᵀ -> (n, 3H)
    else:
        hh_op = prepare(w_hh[: 2 * H], n, True)  # u · W_{h,rz}ᵀ -> (n, 2H)
    hn_op = prepare(w_hh[2 * H : _hn_end(H, reset_after)], n, True)  # (r ⊙ u) · W_hnᵀ
    h_rows = np.empty((n, H), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    u_rows = np.empty((n, H), dtype=dtype)  # d ⊙ h_{t-1}
    u_src = u_rows if dropping else h_rows
    gh = np.empty((n, G if reset_after else 2 * H), dtype=dtype)  # recurrent pre-activations
    rh = np.empty((n, H), dtype=dtype)  # r ⊙ u_{t-1} (reset before)
    hn_buf = np.empty((n, H), dtype=dtype)
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(H, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    for s in range(T):
        t = T - 1 - s if reverse else s
        m = valid_prefix(lengths, rows, t)  # rows[:m] are inside their sequence
        for k in range(m, n):
            b = rows[k]
            gates[t, b, :] = 0
            y[t, b, :] = 0
        if m == 0:
            continue
        if dropping:
            for k in range(m):
                _dropped(drop[rows[k]], h_rows[k], u_rows[k])
        matmul(u_src[:m], hh_op, gh[:m])
        for k in range(m):
            b = rows[k]
            _rz(gh[k], bias, gates[t, b])
            if reset_after:
                _candidate(gh[k, 2 * H :], bias, gates[t, b], True)
            else:
                _reset_times_state(gates[t, b], u_src[k], rh[k])
        if not reset_after:
            matmul(rh[:m], hn_op, hn_buf[:m])  # W_hn (r ⊙ u)
            for k in range(m):
                _candidate(hn_buf[k], bias, gates[t, rows[k]], False)
        for k in range(m):
            b = rows[k]
            _update(gates[t, b], h_rows[k], _keep_row(keep_h, t, b, const_h),
                    probe[t, b] if probe.shape[0] > 0 else no_row, y[t, b])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, y, h0, gates, w_hh, lengths, drop, keep_h, p_h, reverse, reset_after,
              dgx, dgh, dh_seq, t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first), as
    :func:`.gru._backward`: dh (B,H) the gradient flowing into the block on entry, out of
    it on exit; writes dgx, (reset after) dgh, and (if not empty) dh_seq."""
    G = dgx.shape[2]
    H = G // 3
    n = rows.shape[0]
    dtype = dgx.dtype
    dropping = drop.shape[0] > 0
    if reset_after:
        hh_op = prepare(w_hh, n, False)  # g_h (n,3H) · W_hh
    else:
        hh_op = prepare(w_hh[: 2 * H], n, False)  # d(r,z) (n,2H) · W_{h,rz}
    hn_op = prepare(w_hh[2 * H : _hn_end(H, reset_after)], n, False)  # dn_pre · W_hn
    g_h = np.zeros((n, G), dtype=dtype)  # recurrent pre-activation gradients (reset after)
    du = np.zeros((n, H), dtype=dtype)  # the product through W_hh
    drh = np.zeros((n, H), dtype=dtype)
    dn_pre = np.zeros((n, H), dtype=dtype)
    d_rz = np.zeros((n, 2 * H), dtype=dtype)  # d(r, z) pre-activations (reset before)
    dh_tilde = np.zeros((n, H), dtype=dtype)
    u_rows = np.zeros((n, H), dtype=dtype)  # u_{t-1} = d ⊙ h_{t-1} (reset before)
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(H, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    for s in range(t_end - t_begin):
        t = t_begin + s if reverse else t_end - 1 - s
        t_prev = t + 1 if reverse else t - 1  # the step before t in processing order
        i = t - t_begin
        m = valid_prefix(lengths, rows, t)
        # padding: no gradient; dh passes through unchanged
        clear_padding(dgx, i, rows, m)
        clear_padding(dgh, i, rows, m)
        clear_padding(dh_seq, t, rows, m)
        if m == 0:
            continue
        for k in range(m):
            b = rows[k]
            h_prev = y[t_prev, b] if 0 <= t_prev < lengths[b] else h0[b]
            dh[b] += dy[t, b]  # total gradient of h_t: output and step t+1
            if dh_seq.shape[0] > 0:
                dh_seq[t, b, :] = dh[b]
            _unzone(dh[b], _keep_row(keep_h, t, b, const_h), dh_tilde[k], dh[b])
            _step_backward(gates[t, b], dh_tilde[k], h_prev, dgx[i, b], g_h[k], dn_pre[k],
                           reset_after)
            if reset_after:
                dgh[i, b, :] = g_h[k]
            elif dropping:
                _dropped(drop[b], h_prev, u_rows[k])
            else:
                u_rows[k] = h_prev
        if reset_after:
            matmul(g_h[:m], hh_op, du[:m])  # W_hh u
        else:
            matmul(dn_pre[:m], hn_op, drh[:m])  # W_hn (r ⊙ u)
            for k in range(m):
                _reset_backward(gates[t, rows[k]], drh[k], u_rows[k], dgx[i, rows[k]], d_rz[k])
            matmul(d_rz[:m], hh_op, du[:m])
        for k in range(m):
            b = rows[k]
            _state_backward(dh[b], dh_tilde[k], gates[t, b, H : 2 * H], du[k], drh[k],
                            gates[t, b, :H], drop[b] if dropping else no_row, reset_after)


class CpuMaskedGRU:
    """GRU with recurrent dropout and zoneout, compiled
    (:class:`rnnlab.backends.contract.MaskedGRUKernels`)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, _ = x.shape
        H = h0.shape[-1]
        gates = x.new_empty(T, B, 4 * H)
        # x·W_ihᵀ + b_ih straight into the gate buffer, as in CpuGRU.forward.
        project_into(as_array(x).reshape(T * B, -1), as_array(w_ih),
                     bias_array(b_ih, 3 * H, x.dtype),
                     gates.numpy().reshape(T * B, 4 * H)[:, : 3 * H])
        y = x.new_empty(T, B, H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        drop, keep_h, p_h, _, _ = _host.mask_arrays(masks, x.dtype)
        arrays = (gates.numpy(), y.numpy(), h_n.numpy(), as_array(w_hh),
                  optional_array(b_hh, 1, x.dtype), steps, optional_array(h_probe, 3, x.dtype),
                  drop, keep_h, p_h, reverse, reset_after)
        _host.run_kernel(_forward, arrays, plan(steps, T, 2.0 * 3 * H * H))
        return GRUForward(y, h_n, gates)

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, saved: GRUSaved,
        dy: Tensor, dh_n: Tensor, reset_after: bool, need_dh: bool,
    ) -> GRUGrads:
        (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
        T, B, _ = x.shape
        H = h0.shape[-1]
        G = 3 * H
        dh_seq = torch.empty_like(y) if need_dh else _host.no_dh(y)
        dh0 = _host.state_copy(dh_n)
        steps = lengths_array(lengths, T, B)
        rows = plan(steps, T, 2.0 * G * H)
        drop, keep_h, p_h, _, _ = _host.mask_arrays(masks, x.dtype)
        arrays = (as_array(dy), dh0.numpy(), as_array(y), as_array(h0), as_array(gates),
                  as_array(w_hh), steps, drop, keep_h, p_h, reverse, reset_after)
        db_hh = w_ih.new_zeros(G)
        # the recurrent products read u_{t-1} = d ⊙ h_{t-1}: their weight gradients pair
        # the pre-activation gradients with the dropped states
        states = (_host.dropped(masks.drop_h, y), _host.dropped(masks.drop_h, h0))
        if not reset_after:
            with torch.no_grad():
                dw_n = w_hh.new_zeros(H, H)
                u_seq = _host.dropped(masks.drop_h, previous_states(y, h0, lengths, reverse))

        def recurrent(buffers: list[Tensor]) -> Tensor:
            """Gradients of the u_{t-1} products: all three (reset after), else r and z."""
            d, g = buffers
            return g if reset_after else d[..., : 2 * H]

        def after_block(buffers: list[Tensor], t0: int, t1: int) -> None:
            d, g = buffers  # input and (reset after) recurrent pre-activation gradients
            if reset_after:
                db_hh.add_(g.view(-1, G).sum(dim=0))
            else:
                ru = gates[t0:t1, :, :H] * u_seq[t0:t1]  # W_hn reads r ⊙ u_{t-1}
                dw_n.add_(weight_grad(d[..., 2 * H :], ru))

        widths = (G, G if reset_after else 0)
        sums = _host.backward_in_blocks(_backward, arrays, rows, seq, w_ih, states, widths,
                                        dh_seq, recurrent, after_block)
        if reset_after:
            dw_hh = sums.dw_hh
        else:
            dw_hh = torch.cat([sums.dw_hh, dw_n], dim=0)
            db_hh.copy_(sums.db)
        return GRUGrads(sums.dx, dh0, sums.dw_ih, dw_hh, sums.db, db_hh,
                        dh_seq if need_dh else empty_grad(y))

"""GRU, cpu backend, both placements of the reset gate: the whole sequence in one
compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.gru`.

Per step, reset after: one product h_{t-1}·W_hhᵀ (B, 3H), then one vectorised pass.
Reset before: h_{t-1}·W_{h,rz}ᵀ, a pass for r and z, then (r ⊙ h_{t-1})·W_hnᵀ and a pass
for n. x·W_ihᵀ + b_ih for all steps is one GEMM before the loop. Saved for backward:
gates (T,B,4H) = [r, z, n, hn], zero at padding — as :mod:`rnnlab.backends.contract`.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    previous_states,
    weight_grad,
)
from rnnlab.backends.contract import (
    GRUForward,
    GRUGrads,
    GRUSaved,
    GRUWeights,
    Sequence,
)
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
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, sigmoid, tanh
from rnnlab.backends.cpu._parallel import (
    clear_padding,
    plan,
    project_chunk,
    valid_prefix,
)


@njit(inline="always")
def _hn_end(H, reset_after):
    """End of the W_hn rows the kernels prepare on their own: none with reset after
    (W_hn is then part of the one W_hh product), all H rows with reset before."""
    return 2 * H if reset_after else 3 * H


# Per-sample passes are separate compiled functions: inlined into the batch loop, LLVM
# kept their scalar version (see lstm._cell).
@kernel(**KERNEL_OPTIONS)
def _rz(gh, bias, act):
    """r, z = σ(x·W_ihᵀ + b_ih + h·W_hᵀ + b_h) for one sample, in place: act[:2H] holds
    the input pre-activations on entry."""
    for j in range(act.shape[0] // 2):
        act[j] = sigmoid(act[j] + gh[j] + bias[j])


@kernel(**KERNEL_OPTIONS)
def _candidate(hn_raw, bias, act, reset_after):
    """hn = recurrent term + b_hn → act[3H:]; n = tanh(x_n + r ⊙ hn) (reset after) or
    tanh(x_n + hn) → act[2H:3H], which holds x_n on entry."""
    H = act.shape[0] // 4
    if reset_after:
        for j in range(H):
            hn = hn_raw[j] + bias[2 * H + j]
            act[3 * H + j] = hn
            act[2 * H + j] = tanh(act[2 * H + j] + act[j] * hn)
    else:
        for j in range(H):
            hn = hn_raw[j] + bias[2 * H + j]
            act[3 * H + j] = hn
            act[2 * H + j] = tanh(act[2 * H + j] + hn)


@kernel(**KERNEL_OPTIONS)
def _reset_times_state(act, h, rh):
    """rh = r ⊙ h_{t-1} (the input of W_hn, reset before)."""
    for j in range(h.shape[0]):
        rh[j] = act[j] * h[j]


@kernel(**KERNEL_OPTIONS)
def _update(act, h, probe, y):
    """h_t = (1 - z) ⊙ n + z ⊙ h_{t-1} (+ probe when not empty) into y and h."""
    H = h.shape[0]
    for j in range(H):
        n = act[2 * H + j]
        h[j] = n + act[H + j] * (h[j] - n)
    if probe.shape[0] > 0:
        for j in range(H):
            h[j] += probe[j]
    y[:] = h


@kernel(**KERNEL_OPTIONS)
def _forward(gates, y, h, w_hh, b_hh, lengths, probe, reverse, reset_after, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence.
    gates (T,B,4H) holds x·W_ihᵀ + b_ih in [..., :3H] on entry, the gates [r, z, n, hn]
    on exit; y (T,B,H) ← outputs; h (B,H) holds h0 on entry and h_n on exit. b_hh is
    (3H,) or empty."""
    T = gates.shape[0]
    H = gates.shape[2] // 4
    G = 3 * H
    n = rows.shape[0]
    dtype = gates.dtype
    bias = np.zeros(G, dtype=dtype)
    if b_hh.shape[0] > 0:
        bias[:] = b_hh
    if reset_after:
        hh_op = prepare(w_hh, n, True)  # h (n,H) · W_hhᵀ -> (n, 3H)
    else:
        hh_op = prepare(w_hh[: 2 * H], n, True)  # h · W_{h,rz}ᵀ -> (n, 2H)
    hn_op = prepare(w_hh[2 * H : _hn_end(H, reset_after)], n, True)  # (r ⊙ h) · W_hnᵀ
    h_rows = np.empty((n, H), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    gh = np.empty((n, G if reset_after else 2 * H), dtype=dtype)  # recurrent pre-activations
    rh = np.empty((n, H), dtype=dtype)  # r ⊙ h_{t-1} (reset before)
    hn_buf = np.empty((n, H), dtype=dtype)
    no_probe = np.zeros(0, dtype=dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        m = valid_prefix(lengths, rows, t)  # rows[:m] are inside their sequence
        for k in range(m, n):
            b = rows[k]
            gates[t, b, :] = 0
            y[t, b, :] = 0
        if m == 0:
            continue
        matmul(h_rows[:m], hh_op, gh[:m])
        for k in range(m):
            b = rows[k]
            _rz(gh[k], bias, gates[t, b])
            if reset_after:
                _candidate(gh[k, 2 * H :], bias, gates[t, b], True)
            else:
                _reset_times_state(gates[t, b], h_rows[k], rh[k])
        if not reset_after:
            matmul(rh[:m], hn_op, hn_buf[:m])  # W_hn (r ⊙ h)
            for k in range(m):
                _candidate(hn_buf[k], bias, gates[t, rows[k]], False)
        for k in range(m):
            b = rows[k]
            _update(gates[t, b], h_rows[k], probe[t, b] if probe.shape[0] > 0 else no_probe,
                    y[t, b])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer(x, y, h, w_ih, b_ih, w_hh, b_hh, lengths, reverse, reset_after, rows, chunk):
    """Inference over batch rows ``rows`` (longest first): y (T,B,H) ← the outputs; h (B,H)
    holds h0 on entry and h_n on exit. The input projection runs here, ``chunk`` steps
    at a time (see :func:`.lstm._infer`); no activation is kept."""
    T, I = x.shape[0], x.shape[2]
    G = w_ih.shape[0]
    H = G // 3
    n = rows.shape[0]
    dtype = x.dtype
    if reset_after:
        hh_op = prepare(w_hh, n, True)
    else:
        hh_op = prepare(w_hh[: 2 * H], n, True)
    hn_op = prepare(w_hh[2 * H : _hn_end(H, reset_after)], n, True)
    h_rows = np.empty((n, H), dtype=dtype)
    for k in range(n):
        h_rows[k] = h[rows[k]]
    x_buf = np.empty((chunk * n, I), dtype=dtype)
    ih_op = prepare(w_ih, chunk * n, True)  # x (rows, I) · W_ihᵀ
    pre = np.empty((chunk * n, G), dtype=dtype)  # x·W_ihᵀ + b_ih of the chunk's valid rows
    start = np.zeros(chunk + 1, dtype=np.int64)
    act = np.empty((n, 4 * H), dtype=dtype)  # r, z, n, hn of the step
    gh = np.empty((n, G if reset_after else 2 * H), dtype=dtype)
    rh = np.empty((n, H), dtype=dtype)
    hn_buf = np.empty((n, H), dtype=dtype)
    no_probe = np.zeros(0, dtype=dtype)
    for s0 in range(0, T, chunk):
        steps = min(chunk, T - s0)
        project_chunk(x, lengths, rows, s0, steps, T, reverse, ih_op, b_ih, x_buf, pre, start)
        for i in range(steps):
            t = T - 1 - (s0 + i) if reverse else s0 + i
            m = start[i + 1] - start[i]
            for k in range(m, n):
                y[t, rows[k], :] = 0
            if m == 0:
                continue
            matmul(h_rows[:m], hh_op, gh[:m])
            for k in range(m):
                act[k, :G] = pre[start[i] + k]
                _rz(gh[k], b_hh, act[k])
                if reset_after:
                    _candidate(gh[k, 2 * H :], b_hh, act[k], True)
                else:
                    _reset_times_state(act[k], h_rows[k], rh[k])
            if not reset_after:
                matmul(rh[:m], hn_op, hn_buf[:m])
                for k in range(m):
                    _candidate(hn_buf[k], b_hh, act[k], False)
            for k in range(m):
                _update(act[k], h_rows[k], no_probe, y[t, rows[k]])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _step_backward(act, dh, h_prev, d, g_h, dn_pre, reset_after):
    """One sample's step backwards, given dh the total dL/dh_t: d ← gradients of the input
    pre-activations (3H,); reset after: g_h ← those of the recurrent ones; reset before:
    dn_pre ← the candidate's (its r, z entries are completed after the W_hn product)."""
    H = h_prev.shape[0]
    u = one(act)
    for j in range(H):
        r = act[j]
        z = act[H + j]
        n = act[2 * H + j]
        dn = dh[j] * (u - z)  # h = (1 - z) ⊙ n + z ⊙ h_prev
        dz = dh[j] * (h_prev[j] - n)
        dn_p = dn * (u - n * n)  # tanh' = 1 - tanh²
        dz_p = dz * z * (u - z)  # σ' = σ(1 - σ)
        d[H + j] = dz_p
        d[2 * H + j] = dn_p
        if reset_after:
            dr_p = dn_p * act[3 * H + j] * r * (u - r)  # n = tanh(... + r ⊙ hn)
            d[j] = dr_p
            g_h[j] = dr_p
            g_h[H + j] = dz_p
            g_h[2 * H + j] = dn_p * r
        else:
            dn_pre[j] = dn_p


@kernel(**KERNEL_OPTIONS)
def _reset_backward(act, drh, h_prev, d, d_rz):
    """Reset before: dr_pre from d(r ⊙ h_prev) = drh; d_rz ← (dr_pre, dz_pre)."""
    H = h_prev.shape[0]
    u = one(act)
    for j in range(H):
        r = act[j]
        d[j] = drh[j] * h_prev[j] * r * (u - r)
    d_rz[:] = d[: 2 * H]


@kernel(**KERNEL_OPTIONS)
def _state_backward(dh, z, dh_prev, drh, r, reset_after):
    """dL/dh_{t-1} = dh ⊙ z + (product through W_hh) [+ r ⊙ drh, reset before]."""
    if reset_after:
        for j in range(dh.shape[0]):
            dh[j] = dh[j] * z[j] + dh_prev[j]
    else:
        for j in range(dh.shape[0]):
            dh[j] = dh[j] * z[j] + dh_prev[j] + drh[j] * r[j]


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, y, h0, gates, w_hh, lengths, reverse, reset_after, dgx, dgh, dh_seq,
              t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first). dh (B,H)
    holds the gradient flowing into the block on entry (dL/dh_n first) and out of it on
    exit (dL/dh0 after the last). Writes dgx (t_end - t_begin, B, 3H), the gradients of
    the input pre-activations; with reset after, dgh (same shape) those of the recurrent
    pre-activations; and (if not empty) dh_seq (T,B,H), the total dL/dh_t."""
    G = dgx.shape[2]
    H = G // 3
    n = rows.shape[0]
    dtype = dgx.dtype
    if reset_after:
        hh_op = prepare(w_hh, n, False)  # g_h (n,3H) · W_hh
    else:
        hh_op = prepare(w_hh[: 2 * H], n, False)  # d(r,z) (n,2H) · W_{h,rz}
    hn_op = prepare(w_hh[2 * H : _hn_end(H, reset_after)], n, False)  # dn_pre · W_hn
    g_h = np.zeros((n, G), dtype=dtype)  # recurrent pre-activation gradients (reset after)
    dh_prev = np.zeros((n, H), dtype=dtype)
    drh = np.zeros((n, H), dtype=dtype)
    dn_pre = np.zeros((n, H), dtype=dtype)
    d_rz = np.zeros((n, 2 * H), dtype=dtype)  # d(r, z) pre-activations (reset before)
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
            _step_backward(gates[t, b], dh[b], h_prev, dgx[i, b], g_h[k], dn_pre[k],
                           reset_after)
            if reset_after:
                dgh[i, b, :] = g_h[k]
        if reset_after:
            matmul(g_h[:m], hh_op, dh_prev[:m])  # W_hh h_prev
        else:
            matmul(dn_pre[:m], hn_op, drh[:m])  # W_hn (r ⊙ h)
            for k in range(m):
                b = rows[k]
                h_prev = y[t_prev, b] if 0 <= t_prev < lengths[b] else h0[b]
                _reset_backward(gates[t, b], drh[k], h_prev, dgx[i, b], d_rz[k])
            matmul(d_rz[:m], hh_op, dh_prev[:m])
        for k in range(m):
            b = rows[k]
            _state_backward(dh[b], gates[t, b, H : 2 * H], dh_prev[k], drh[k],
                            gates[t, b, :H], reset_after)


class CpuGRU:
    """GRU, compiled (:class:`rnnlab.backends.contract.GRUKernels`)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, _ = x.shape
        H = h0.shape[-1]
        gates = x.new_empty(T, B, 4 * H)
        # x·W_ihᵀ + b_ih straight into the gate buffer, where the kernel turns it into the
        # gates: no (T, B, 3H) buffer of its own. Padding rows of x are projected unmasked
        # (no copy of x): the kernel never reads them, and it zeroes their outputs.
        project_into(as_array(x).reshape(T * B, -1), as_array(w_ih),
                     bias_array(b_ih, 3 * H, x.dtype),
                     gates.numpy().reshape(T * B, 4 * H)[:, : 3 * H])
        y = x.new_empty(T, B, H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (gates.numpy(), y.numpy(), h_n.numpy(), as_array(w_hh),
                  optional_array(b_hh, 1, x.dtype), steps, optional_array(h_probe, 3, x.dtype),
                  reverse, reset_after)
        _host.run_kernel(_forward, arrays, plan(steps, T, 2.0 * 3 * H * H))
        return GRUForward(y, h_n, gates)

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, reset_after: bool, need_dh: bool,
    ) -> GRUGrads:
        (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
        T, B, _ = x.shape
        H = h0.shape[-1]
        G = 3 * H
        dh_seq = torch.empty_like(y) if need_dh else _host.no_dh(y)
        dh0 = _host.state_copy(dh_n)
        steps = lengths_array(lengths, T, B)
        rows = plan(steps, T, 2.0 * G * H)
        arrays = (as_array(dy), dh0.numpy(), as_array(y), as_array(h0), as_array(gates),
                  as_array(w_hh), steps, reverse, reset_after)
        db_hh = w_ih.new_zeros(G)
        if not reset_after:
            with torch.no_grad():
                dw_n = w_hh.new_zeros(H, H)
                h_prev_seq = previous_states(y, h0, lengths, reverse)

        def recurrent(buffers: list[Tensor]) -> Tensor:
            """Gradients of the h_{t-1} products: all three (reset after), else r and z."""
            d, g = buffers
            return g if reset_after else d[..., : 2 * H]

        def after_block(buffers: list[Tensor], t0: int, t1: int) -> None:
            d, g = buffers  # input and (reset after) recurrent pre-activation gradients
            if reset_after:
                db_hh.add_(g.view(-1, G).sum(dim=0))
            else:
                rh = gates[t0:t1, :, :H] * h_prev_seq[t0:t1]  # W_hn reads r ⊙ h_prev
                dw_n.add_(weight_grad(d[..., 2 * H :], rh))

        widths = (G, G if reset_after else 0)
        sums = _host.backward_in_blocks(_backward, arrays, rows, seq, w_ih, (y, h0), widths,
                                        dh_seq, recurrent, after_block)
        if reset_after:
            dw_hh = sums.dw_hh
        else:
            dw_hh = torch.cat([sums.dw_hh, dw_n], dim=0)
            db_hh.copy_(sums.db)
        return GRUGrads(sums.dx, dh0, sums.dw_ih, dw_hh, sums.db, db_hh,
                        dh_seq if need_dh else empty_grad(y))

    def infer(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, reset_after: bool
    ) -> tuple[Tensor, Tensor]:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, I = x.shape
        H = h0.shape[-1]
        G = 3 * H
        y = x.new_empty(T, B, H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (as_array(x), y.numpy(), h_n.numpy(), as_array(w_ih), bias_array(b_ih, G, x.dtype),
                  as_array(w_hh), bias_array(b_hh, G, x.dtype), steps, reverse, reset_after)
        _host.run_infer(_infer, arrays, plan(steps, T, 2.0 * G * (H + I)))
        return y, h_n

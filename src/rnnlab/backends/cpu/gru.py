"""GRU, cpu backend, both placements of the reset gate: the whole sequence in one
compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.gru`, and with
recurrent dropout and zoneout those of :mod:`rnnlab.reference.gru_masked` (d the dropout
multiplier, u_{t-1} = d ⊙ h_{t-1} what the recurrent products read, k the zoneout share).
One set of loops serves both families: :class:`CpuGRU` passes no masks, and the masked
steps (:mod:`._masks`) are branches taken once per sample and step, not per element.

Per step, reset after: one product u_{t-1}·W_hhᵀ (B, 3H), then one vectorised pass.
Reset before: u_{t-1}·W_{h,rz}ᵀ, a pass for r and z, then (r ⊙ u_{t-1})·W_hnᵀ and a pass
for n; the update reads h_{t-1} itself, then zoneout mixes h_{t-1} and h̃_t.
x·W_ihᵀ + b_ih for all steps is one GEMM before the loop. Saved for backward:
gates (T,B,4H) = [r, z, n, hn], zero at padding — as :mod:`rnnlab.backends.contract`.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    weight_grad,
)
from rnnlab.backends.contract import (
    GRUForward,
    GRUGrads,
    GRUSaved,
    GRUWeights,
    Masks,
    PackedRows,
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
from rnnlab.backends.cpu._masks import dropped, keep_row, unzone
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, sigmoid, tanh
from rnnlab.backends.cpu._parallel import (
    block_step,
    chunk_step,
    clear_step,
    plan,
    previous_row,
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
def _zoned_update(act, h, keep, probe, y):
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
def _forward(gates, y, h, w_hh, b_hh, lengths, base, padded, probe, drop, keep_h, p_h,
             reverse, reset_after, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence, its
    per-step arrays as rows (``base``, ``padded``: :class:`._host.Rows`). gates (·, 4H)
    holds x·W_ihᵀ + b_ih in [:, :3H] on entry, the gates [r, z, n, hn] on exit; y ←
    outputs; h (B,H) holds h0 on entry and h_n on exit. b_hh is (3H,) or empty; the
    masks as in :class:`._host.MaskArrays` (the products read u_{t-1} = d ⊙ h_{t-1}, the
    update h_{t-1} itself)."""
    T = base.shape[0] - 1
    H = gates.shape[1] // 4
    G = 3 * H
    n = rows.shape[0]
    dtype = gates.dtype
    dropping = drop.shape[0] > 0
    zoning = keep_h.shape[0] > 0 or p_h != 0
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
    u_rows = np.empty((n if dropping else 0, H), dtype=dtype)  # d ⊙ h_{t-1}
    u_src = u_rows if dropping else h_rows
    gh = np.empty((n, G if reset_after else 2 * H), dtype=dtype)  # recurrent pre-activations
    rh = np.empty((n, H), dtype=dtype)  # r ⊙ u_{t-1} (reset before)
    hn_buf = np.empty((n, H), dtype=dtype)
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(H, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    for s in range(T):
        t = T - 1 - s if reverse else s
        m = valid_prefix(lengths, rows, t)  # rows[:m] are inside their sequence
        first = base[t]
        clear_step(gates, first, rows, m, padded)
        clear_step(y, first, rows, m, padded)
        if m == 0:
            continue
        if dropping:
            for k in range(m):
                dropped(drop[rows[k]], h_rows[k], u_rows[k])
        matmul(u_src[:m], hh_op, gh[:m])
        for k in range(m):
            r = first + rows[k]
            _rz(gh[k], bias, gates[r])
            if reset_after:
                _candidate(gh[k, 2 * H :], bias, gates[r], True)
            else:
                _reset_times_state(gates[r], u_src[k], rh[k])
        if not reset_after:
            matmul(rh[:m], hn_op, hn_buf[:m])  # W_hn (r ⊙ u)
            for k in range(m):
                _candidate(hn_buf[k], bias, gates[first + rows[k]], False)
        for k in range(m):
            b = rows[k]
            r = first + b
            probe_row = probe[r] if probe.shape[0] > 0 else no_row
            if zoning:
                _zoned_update(gates[r], h_rows[k], keep_row(keep_h, t, b, const_h),
                              probe_row, y[r])
            else:
                _update(gates[r], h_rows[k], probe_row, y[r])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer(x, y, h, w_ih, b_ih, w_hh, b_hh, lengths, base, padded, reverse, reset_after, rows,
           chunk):
    """Inference over batch rows ``rows`` (longest first), x and y as rows
    (:class:`._host.Rows`): y ← the outputs; h (B,H) holds h0 on entry and h_n on exit.
    The input projection runs here, ``chunk`` steps at a time (see
    :func:`.lstm._infer`); no activation is kept."""
    T, I = base.shape[0] - 1, x.shape[1]
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
        project_chunk(x, base, lengths, rows, s0, steps, reverse, ih_op, b_ih, x_buf, pre, start)
        for i in range(steps):
            t, m = chunk_step(start, s0, i, T, reverse)
            clear_step(y, base[t], rows, m, padded)
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
                _update(act[k], h_rows[k], no_probe, y[base[t] + rows[k]])
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
def _state_backward(dh, z, du, drh, r, reset_after):
    """dL/dh_{t-1} = dh ⊙ z + du, du the product through W_hh [+ r ⊙ drh, reset before]."""
    if reset_after:
        for j in range(dh.shape[0]):
            dh[j] = dh[j] * z[j] + du[j]
    else:
        for j in range(dh.shape[0]):
            dh[j] = dh[j] * z[j] + du[j] + drh[j] * r[j]


@kernel(**KERNEL_OPTIONS)
def _masked_state_backward(dh, dh_tilde, z, du, drh, r, drop, reset_after):
    """dL/dh_{t-1} = k ⊙ dh_t (in ``dh`` on entry) + z ⊙ dh̃_t + d ⊙ du_t, du_t the
    product through W_hh [+ r ⊙ drh, reset before]; d = 1 when ``drop`` is empty."""
    u = one(dh)
    for j in range(dh.shape[0]):
        d_u = du[j] if reset_after else du[j] + drh[j] * r[j]
        d = drop[j] if drop.shape[0] > 0 else u
        dh[j] = dh[j] + z[j] * dh_tilde[j] + d * d_u


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, y, h0, gates, w_hh, lengths, base, padded, drop, keep_h, p_h, reverse,
              reset_after, dgx, dgh, dh_seq, t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first), every
    per-step array as rows (:class:`._host.Rows`). dh (B,H) holds the gradient flowing
    into the block on entry (dL/dh_n first) and out of it on exit (dL/dh0 after the
    last). Writes dgx (the block's rows, 3H), the gradients of the input
    pre-activations; with reset after, dgh (same shape) those of the recurrent
    pre-activations; and (if not empty) dh_seq, the total dL/dh_t. The masks as in
    :func:`_forward`."""
    G = dgx.shape[1]
    H = G // 3
    n = rows.shape[0]
    dtype = dgx.dtype
    dropping = drop.shape[0] > 0
    masked = dropping or keep_h.shape[0] > 0 or p_h != 0
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
    dh_tilde = np.zeros((n if masked else 0, H), dtype=dtype)
    u_rows = np.zeros((n, H), dtype=dtype)  # u_{t-1} = d ⊙ h_{t-1} (reset before)
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(H, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    for s in range(t_end - t_begin):
        t, t_prev, _ = block_step(s, t_begin, t_end, reverse)
        m = valid_prefix(lengths, rows, t)
        first, block_first = base[t], base[t] - base[t_begin]
        # padding: no gradient; dh passes through unchanged
        clear_step(dgx, block_first, rows, m, padded)
        clear_step(dgh, block_first, rows, m, padded)
        clear_step(dh_seq, first, rows, m, padded)
        if m == 0:
            continue
        for k in range(m):
            b = rows[k]
            r, i = first + b, block_first + b
            h_prev = previous_row(y, h0, base, t_prev, lengths, b)
            dh[b] += dy[r]  # total gradient of h_t: output and step t+1
            if dh_seq.shape[0] > 0:
                dh_seq[r, :] = dh[b]
            if masked:  # dh̃ reaches the cell, k ⊙ dh stays in dh for h_{t-1}
                unzone(dh[b], keep_row(keep_h, t, b, const_h), dh_tilde[k], dh[b])
                _step_backward(gates[r], dh_tilde[k], h_prev, dgx[i], g_h[k], dn_pre[k],
                               reset_after)
            else:
                _step_backward(gates[r], dh[b], h_prev, dgx[i], g_h[k], dn_pre[k],
                               reset_after)
            if reset_after:
                dgh[i, :] = g_h[k]
            elif dropping:
                dropped(drop[b], h_prev, u_rows[k])
            else:
                u_rows[k] = h_prev
        if reset_after:
            matmul(g_h[:m], hh_op, du[:m])  # W_hh u
        else:
            matmul(dn_pre[:m], hn_op, drh[:m])  # W_hn (r ⊙ u)
            for k in range(m):
                _reset_backward(gates[first + rows[k]], drh[k], u_rows[k],
                                dgx[block_first + rows[k]], d_rz[k])
            matmul(d_rz[:m], hh_op, du[:m])
        for k in range(m):
            b = rows[k]
            r = first + b
            if masked:
                _masked_state_backward(dh[b], dh_tilde[k], gates[r, H : 2 * H], du[k],
                                       drh[k], gates[r, :H],
                                       drop[b] if dropping else no_row, reset_after)
            else:
                _state_backward(dh[b], gates[r, H : 2 * H], du[k], drh[k], gates[r, :H],
                                reset_after)


def _run_forward(
    w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks | None, h_probe: Tensor | None,
    reset_after: bool,
) -> GRUForward:
    """The forward of :class:`CpuGRU` and :class:`CpuMaskedGRU` (``masks`` None: plain)."""
    (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
    T, B, base, padded = _host.rows_of(seq)
    H = h0.shape[-1]
    gates = x.new_empty(*x.shape[:-1], 4 * H)
    # x·W_ihᵀ + b_ih straight into the gate buffer, where the kernel turns it into the
    # gates: no (T, B, 3H) buffer of its own. Padding rows of x are projected unmasked
    # (no copy of x): the kernel never reads them, and it zeroes their outputs.
    project_into(_host.flat(x), as_array(w_ih), bias_array(b_ih, 3 * H, x.dtype),
                 _host.flat(gates)[:, : 3 * H])
    y = x.new_empty(*x.shape[:-1], H)
    h_n = _host.state_copy(h0)
    steps = lengths_array(lengths, T, B)
    drop, keep_h, p_h, _, _ = _host.mask_arrays(masks, x.dtype)
    arrays = (_host.flat(gates), _host.flat(y), h_n.numpy(), as_array(w_hh),
              optional_array(b_hh, 1, x.dtype), steps, base, padded,
              _host.flat_optional(h_probe, x), drop, keep_h, p_h, reverse, reset_after)
    _host.run_kernel(_forward, arrays, plan(steps, T, 2.0 * 3 * H * H))
    return GRUForward(y, h_n, gates)


def _run_backward(
    w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks | None, saved: GRUSaved,
    dy: Tensor, dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
) -> GRUGrads:
    """The backward of :class:`CpuGRU` and :class:`CpuMaskedGRU` (``masks`` None: plain)."""
    (x, lengths, reverse), (w_ih, w_hh), (y, gates) = seq, (w.w_ih, w.w_hh), saved
    T, B, base, padded = _host.rows_of(seq)
    H = h0.shape[-1]
    G = 3 * H
    drop_h = None if masks is None else masks.drop_h
    dh_seq = torch.empty_like(y) if need_dh else _host.no_dh(y)
    dh0 = _host.state_copy(dh_n)
    steps = lengths_array(lengths, T, B)
    rows = plan(steps, T, 2.0 * G * H)
    drop, keep_h, p_h, _, _ = _host.mask_arrays(masks, x.dtype)
    arrays = (_host.flat(dy), dh0.numpy(), _host.flat(y), as_array(h0), _host.flat(gates),
              as_array(w_hh), steps, base, padded, drop, keep_h, p_h, reverse, reset_after)
    db_hh = w_ih.new_zeros(G)
    # the recurrent products read u_{t-1} = d ⊙ h_{t-1}: their weight gradients pair
    # the pre-activation gradients with the dropped states
    rows_of = _host.flat_rows
    states = (rows_of(_host.dropped(drop_h, y)), _host.dropped(drop_h, h0))
    if not reset_after:
        with torch.no_grad():
            dw_n = w_hh.new_zeros(H, H)
            u_seq = _host.previous_state_rows(seq, rows_of(y), h0)
            if drop_h is not None:  # (a masked call is never packed: rows are (T·B, H))
                u_seq = (u_seq.view(T, B, H) * drop_h).view(T * B, H)

    def recurrent(buffers: list[Tensor]) -> Tensor:
        """Gradients of the u_{t-1} products: all three (reset after), else r and z."""
        d, g = buffers
        return g if reset_after else d[:, : 2 * H]

    def after_block(buffers: list[Tensor], r0: int, r1: int) -> None:
        d, g = buffers  # input and (reset after) recurrent pre-activation gradients
        if reset_after:
            db_hh.add_(g.sum(dim=0))
        else:
            ru = rows_of(gates)[r0:r1, :H] * u_seq[r0:r1]  # W_hn reads r ⊙ u_{t-1}
            dw_n.add_(weight_grad(d[:, 2 * H :], ru))

    widths = (G, G if reset_after else 0)
    sums = _host.backward_in_blocks(_backward, arrays, rows, seq, w_ih, states, widths,
                                    dh_seq, recurrent, need_dx, after_block, by_rows=True)
    if reset_after:
        dw_hh = sums.dw_hh
    else:
        dw_hh = torch.cat([sums.dw_hh, dw_n], dim=0)
        db_hh.copy_(sums.db)
    return GRUGrads(sums.dx, dh0, sums.dw_ih, dw_hh, sums.db, db_hh,
                    dh_seq if need_dh else empty_grad(y))


class CpuGRU(PackedRows):
    """GRU, compiled (:class:`rnnlab.backends.contract.GRUKernels`)."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        return _run_forward(w, seq, h0, None, h_probe, reset_after)

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
    ) -> GRUGrads:
        return _run_backward(w, seq, h0, None, saved, dy, dh_n, reset_after, need_dh,
                             need_dx)

    def infer(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, reset_after: bool
    ) -> tuple[Tensor, Tensor]:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, base, padded = _host.rows_of(seq)
        H, I = h0.shape[-1], x.shape[-1]
        G = 3 * H
        y = x.new_empty(*x.shape[:-1], H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (_host.flat(x), _host.flat(y), h_n.numpy(), as_array(w_ih),
                  bias_array(b_ih, G, x.dtype), as_array(w_hh), bias_array(b_hh, G, x.dtype),
                  steps, base, padded, reverse, reset_after)
        _host.run_infer(_infer, arrays, plan(steps, T, 2.0 * G * (H + I)))
        return y, h_n


class CpuMaskedGRU:
    """GRU with recurrent dropout and zoneout, compiled
    (:class:`rnnlab.backends.contract.MaskedGRUKernels`): :class:`CpuGRU`'s loops with
    the masks."""

    def forward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, h_probe: Tensor | None,
        reset_after: bool,
    ) -> GRUForward:
        return _run_forward(w, seq, h0, masks, h_probe, reset_after)

    def backward(
        self, w: GRUWeights, seq: Sequence, h0: Tensor, masks: Masks, saved: GRUSaved,
        dy: Tensor, dh_n: Tensor, reset_after: bool, need_dh: bool, need_dx: bool,
    ) -> GRUGrads:
        return _run_backward(w, seq, h0, masks, saved, dy, dh_n, reset_after, need_dh,
                             need_dx)

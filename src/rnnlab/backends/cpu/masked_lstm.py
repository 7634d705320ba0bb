"""LSTM with recurrent dropout and zoneout, cpu backend: the whole sequence in one
compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.lstm_masked` (d the
recurrent dropout multiplier, k^h and k^c the zoneout shares, c̃_t the cell before
zoneout, m_t = o ⊙ tanh(c̃_t)). The loops are :mod:`.lstm`'s with the masks added: per
step one product (d ⊙ h_{t-1})·W_hhᵀ into the gate buffer, which already holds
x_t·W_ihᵀ + b (one GEMM before the loop), one pass over the gates that is
:func:`.lstm._cell` with zoneout of c added (c̃_t, c_t and m_t; one pass rather than the
plain cell and a second over c: 3× fewer calls per sample and step), then zoneout of h
and the output (:func:`.lstm._emit`). Backward splits each state's gradient into the
shares of the candidate, (1 - k) ⊙ dh, and of the previous state, k ⊙ dh; its cell pass
is :func:`.lstm._cell_backward` with that split of dc in the same pass. A zoneout share
is a (T, B, ·) array or, in the eval form, one constant p (:class:`._host.MaskArrays`),
which each call spreads into one row it reads at every step (:func:`_keep_row`): the
per-sample passes read a row either way, with no branch per element. Saved: gates
(T,B,4H), c_t and c̃_t (T,B,H), zero at padding steps
(:class:`rnnlab.backends.contract.MaskedLSTMForward`).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from rnnlab.backends._host import empty_grad, project_inputs, sum_bias, weight_grad
from rnnlab.backends.contract import (
    LSTMGrads,
    LSTMState,
    LSTMWeights,
    MaskedLSTMForward,
    MaskedLSTMSaved,
    Masks,
    Sequence,
)
from rnnlab.backends.cpu import _host
from rnnlab.backends.cpu._blas import matmul, prepare
from rnnlab.backends.cpu._common import as_array, lengths_array, optional_array
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, sigmoid, tanh
from rnnlab.backends.cpu._parallel import clear_padding, plan, valid_prefix
from rnnlab.backends.cpu.lstm import _emit

__all__ = ["CpuMaskedLSTM"]


@kernel(**KERNEL_OPTIONS)
def _dropped(drop, h, u):
    """u ← d ⊙ h for one sample (d = ``drop``)."""
    for j in range(h.shape[0]):
        u[j] = drop[j] * h[j]


@kernel(**KERNEL_OPTIONS)
def _zone(previous, new, keep, out):
    """out ← k ⊙ previous + (1 - k) ⊙ new for one sample (k = ``keep``); ``out`` may be
    ``previous``."""
    u = one(new)
    for j in range(new.shape[0]):
        k = keep[j]
        out[j] = k * previous[j] + (u - k) * new[j]


@njit(inline="always")
def _keep_row(keep, t, b, constant):
    """Sample b's zoneout share at step t: its row of ``keep`` (T, B, ·), or ``constant``
    (the eval form's p in every entry) when ``keep`` is empty."""
    return keep[t, b] if keep.shape[0] > 0 else constant


@kernel(**KERNEL_OPTIONS)
def _cell(act, rec, c, keep, c_tilde, c_out, m):
    """One sample's step, :func:`.lstm._cell` with zoneout of the cell state in the same
    pass: ``act`` (4H,) input pre-activations in, activated gates out; ``rec`` (4H,) the
    recurrent pre-activations; c (H,) c_{t-1} in, c_t out (also into c_out);
    c_tilde (H,) ← c̃_t; m (H,) ← o ⊙ tanh(c̃_t); ``keep`` (H,) k^c_t."""
    H = c.shape[0]
    u = one(act)
    for j in range(H):
        i = sigmoid(act[j] + rec[j])
        f = sigmoid(act[H + j] + rec[H + j])
        g = tanh(act[2 * H + j] + rec[2 * H + j])
        o = sigmoid(act[3 * H + j] + rec[3 * H + j])
        c_prev = c[j]
        c_new = f * c_prev + i * g
        k = keep[j]
        c_t = k * c_prev + (u - k) * c_new
        act[j] = i
        act[H + j] = f
        act[2 * H + j] = g
        act[3 * H + j] = o
        c_tilde[j] = c_new
        c[j] = c_t
        c_out[j] = c_t
        m[j] = o * tanh(c_new)


@kernel(**KERNEL_OPTIONS)
def _cell_backward(act, c_tilde, c_prev, dm, dc, keep, dpre):
    """One sample's step backwards, :func:`.lstm._cell_backward` with zoneout of the cell
    state: gates ``act`` (4H,), c̃_t and c_{t-1} (H,), dm (H,) the gradient of
    m_t = o ⊙ tanh(c̃_t), ``keep`` (H,) k^c_t; dc (H,) holds dL/dc_t on entry and
    dL/dc_{t-1} on exit; dpre (4H,) ← gradients of the pre-activations."""
    H = c_tilde.shape[0]
    u = one(act)
    for j in range(H):
        i = act[j]
        f = act[H + j]
        g = act[2 * H + j]
        o = act[3 * H + j]
        k = keep[j]
        tanh_c = tanh(c_tilde[j])
        do = dm[j] * tanh_c  # m = o ⊙ tanh(c̃)
        dc_tilde = (u - k) * dc[j] + dm[j] * o * (u - tanh_c * tanh_c)  # c = k c_prev + (1-k) c̃
        di = dc_tilde * g  # c̃ = f ⊙ c_prev + i ⊙ g
        dg = dc_tilde * i
        df = dc_tilde * c_prev[j]
        dpre[j] = di * i * (u - i)  # σ' = σ(1 - σ)
        dpre[H + j] = df * f * (u - f)
        dpre[2 * H + j] = dg * (u - g * g)  # tanh' = 1 - tanh²
        dpre[3 * H + j] = do * o * (u - o)
        dc[j] = k * dc[j] + dc_tilde * f


@kernel(**KERNEL_OPTIONS)
def _unzone(grad, keep, to_new, to_previous):
    """A state's gradient split for one sample: to_new ← (1 - k) ⊙ grad (what reaches
    the candidate), to_previous ← k ⊙ grad (what reaches the previous state directly),
    k = ``keep``. ``to_previous`` may be ``grad``."""
    u = one(grad)
    for j in range(grad.shape[0]):
        g = grad[j]
        k = keep[j]
        to_new[j] = (u - k) * g
        to_previous[j] = k * g


@kernel(**KERNEL_OPTIONS)
def _add_dropped(drop, v, out):
    """out += d ⊙ v for one sample (out += v when ``drop`` is empty)."""
    if drop.shape[0] > 0:
        for j in range(v.shape[0]):
            out[j] += drop[j] * v[j]
    else:
        for j in range(v.shape[0]):
            out[j] += v[j]


@kernel(**KERNEL_OPTIONS)
def _forward(gates, c_seq, c_tilde_seq, y, h, c, w_hh, w_hr, lengths, probe, drop, keep_h,
             p_h, keep_c, p_c, reverse, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence.
    gates (T,B,4H) holds x·W_ihᵀ + b on entry, the activated gates on exit; h (B,P)
    and c (B,H) hold the initial state on entry, the final state on exit; the masks as
    in :class:`._host.MaskArrays`."""
    T, G = gates.shape[0], gates.shape[2]
    H = G // 4
    P = h.shape[1]
    n = rows.shape[0]
    dtype = gates.dtype
    projected = w_hr.shape[0] > 0
    dropping = drop.shape[0] > 0
    hh_op = prepare(w_hh, n, True)  # u (n,P) · W_hhᵀ
    hr_op = prepare(w_hr, n, True)  # m (n,H) · W_hrᵀ
    h_rows = np.empty((n, P), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    u_rows = np.empty((n, P), dtype=dtype)  # d ⊙ h_{t-1}
    u_src = u_rows if dropping else h_rows
    rec = np.empty((n, G), dtype=dtype)  # u_{t-1} · W_hhᵀ
    m = np.empty((n, H), dtype=dtype)  # o ⊙ tanh(c̃_t)
    h_proj = np.empty((n, P), dtype=dtype)
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(P, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    const_c = np.full(H, p_c, dtype=dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        live = valid_prefix(lengths, rows, t)  # rows[:live] are inside their sequence
        for k in range(live, n):
            b = rows[k]
            gates[t, b, :] = 0
            c_seq[t, b, :] = 0
            c_tilde_seq[t, b, :] = 0
            y[t, b, :] = 0
        if live == 0:
            continue
        if dropping:
            for k in range(live):
                _dropped(drop[rows[k]], h_rows[k], u_rows[k])
        matmul(u_src[:live], hh_op, rec[:live])
        for k in range(live):
            b = rows[k]
            _cell(gates[t, b], rec[k], c[b], _keep_row(keep_c, t, b, const_c), c_tilde_seq[t, b],
                  c_seq[t, b], m[k])
        h_tilde = m
        if projected:
            matmul(m[:live], hr_op, h_proj[:live])  # (live, P)
            h_tilde = h_proj
        for k in range(live):
            b = rows[k]
            _zone(h_rows[k], h_tilde[k], _keep_row(keep_h, t, b, const_h), h_rows[k])
            _emit(h_rows[k], probe[t, b] if probe.shape[0] > 0 else no_row, y[t, b], h_rows[k])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, dc, gates, c_seq, c_tilde_seq, c0, w_hh, w_hr, lengths, drop, keep_h,
              p_h, keep_c, p_c, reverse, dgates, dh_seq, t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first), as
    :func:`.lstm._backward`: dh (B,P), dc (B,H) the gradients flowing into the block on
    entry, out of it on exit; writes dgates (t_end - t_begin, B, 4H) and, if not empty,
    dh_seq (T,B,P) the total dL/dh_t."""
    G = gates.shape[2]
    H = G // 4
    P = dh.shape[1]
    n = rows.shape[0]
    dtype = gates.dtype
    projected = w_hr.shape[0] > 0
    hh_op = prepare(w_hh, n, False)  # dpre (n,4H) · W_hh
    hr_op = prepare(w_hr, n, False)  # dh̃ (n,P) · W_hr
    dh_total = np.empty((n, P), dtype=dtype)
    dh_tilde = np.empty((n, P), dtype=dtype)
    dm = np.empty((n, H), dtype=dtype)
    dpre = np.empty((n, G), dtype=dtype)
    du = np.empty((n, P), dtype=dtype)  # W_hhᵀ da_t, the gradient of u_{t-1} = d ⊙ h_{t-1}
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(P, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    const_c = np.full(H, p_c, dtype=dtype)
    for s in range(t_end - t_begin):
        t = t_begin + s if reverse else t_end - 1 - s
        t_prev = t + 1 if reverse else t - 1  # the step before t in processing order
        live = valid_prefix(lengths, rows, t)
        # padding: no gradient; dh, dc pass through unchanged
        clear_padding(dgates, t - t_begin, rows, live)
        clear_padding(dh_seq, t, rows, live)
        if live == 0:
            continue
        for k in range(live):
            b = rows[k]
            for j in range(P):
                dh_total[k, j] = dy[t, b, j] + dh[b, j]  # from the output and from t+1
            if dh_seq.shape[0] > 0:
                dh_seq[t, b, :] = dh_total[k]
            _unzone(dh_total[k], _keep_row(keep_h, t, b, const_h), dh_tilde[k], dh[b])
        d_m = dh_tilde
        if projected:
            matmul(dh_tilde[:live], hr_op, dm[:live])  # h̃ = W_hr m
            d_m = dm
        for k in range(live):
            b = rows[k]
            c_prev = c_seq[t_prev, b] if 0 <= t_prev < lengths[b] else c0[b]
            _cell_backward(gates[t, b], c_tilde_seq[t, b], c_prev, d_m[k], dc[b],
                           _keep_row(keep_c, t, b, const_c), dpre[k])
            dgates[t - t_begin, b, :] = dpre[k]
        matmul(dpre[:live], hh_op, du[:live])
        for k in range(live):
            b = rows[k]
            _add_dropped(drop[b] if drop.shape[0] > 0 else no_row, du[k], dh[b])


class CpuMaskedLSTM:
    """LSTM with recurrent dropout and zoneout, compiled
    (:class:`rnnlab.backends.contract.MaskedLSTMKernels`)."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        h_probe: Tensor | None,
    ) -> MaskedLSTMForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
        T, B, _ = x.shape
        H, P = c0.shape[-1], h0.shape[-1]
        # Padding rows are projected unmasked and never read, as in CpuLSTM.forward.
        with torch.no_grad():
            gates = project_inputs(x.detach(), w_ih.detach(), sum_bias(b_ih, b_hh)).contiguous()
        y = x.new_empty(T, B, P)
        c_seq, c_tilde = x.new_empty(T, B, H), x.new_empty(T, B, H)
        h_n, c_n = _host.state_copy(h0), _host.state_copy(c0)
        steps = lengths_array(lengths, T, B)
        flops = 2.0 * (4 * H * P + (H * P if w_hr is not None else 0))  # per sample and step
        arrays = (gates.numpy(), c_seq.numpy(), c_tilde.numpy(), y.numpy(), h_n.numpy(),
                  c_n.numpy(), as_array(w_hh), optional_array(w_hr, 2, x.dtype), steps,
                  optional_array(h_probe, 3, x.dtype), *_host.mask_arrays(masks, x.dtype),
                  reverse)
        _host.run_kernel(_forward, arrays, plan(steps, T, flops))
        return MaskedLSTMForward(y, h_n, c_n, gates, c_seq, c_tilde)

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        saved: MaskedLSTMSaved, dy: Tensor, d_state: LSTMState, need_dh: bool,
    ) -> LSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq, c_tilde) = seq, state, saved
        (w_ih, w_hh, w_hr), (dh_n, dc_n) = (w.w_ih, w.w_hh, w.w_hr), d_state
        T, B, _ = x.shape
        H, P = c0.shape[-1], h0.shape[-1]
        projected = w_hr is not None
        dh_seq = torch.empty_like(y) if (need_dh or projected) else _host.no_dh(y)
        dh0, dc0 = _host.state_copy(dh_n), _host.state_copy(dc_n)
        steps = lengths_array(lengths, T, B)
        rows = plan(steps, T, 2.0 * (4 * H * P + (H * P if projected else 0)))
        arrays = (as_array(dy), dh0.numpy(), dc0.numpy(), as_array(gates), as_array(c_seq),
                  as_array(c_tilde), as_array(c0), as_array(w_hh),
                  optional_array(w_hr, 2, x.dtype), steps, *_host.mask_arrays(masks, x.dtype),
                  reverse)
        dw_hr = torch.zeros_like(w_hr) if projected else empty_grad(y)

        def add_dw_hr(buffers: list[Tensor], t0: int, t1: int) -> None:
            # dW_hr = Σ_t dh̃_t m_tᵀ, dh̃_t = (1 - k^h_t) ⊙ dh_t, m_t = o ⊙ tanh(c̃_t)
            m = gates[t0:t1, :, 3 * H :] * torch.tanh(c_tilde[t0:t1])
            dh_tilde = dh_seq[t0:t1]
            if masks.keep_h is not None:
                dh_tilde = dh_tilde * (1 - masks.keep_h[t0:t1])
            dw_hr.add_(weight_grad(dh_tilde, m))

        # W_hh reads u_{t-1} = d ⊙ h_{t-1}: its gradient pairs da_t with the dropped states
        states = (_host.dropped(masks.drop_h, y), _host.dropped(masks.drop_h, h0))
        sums = _host.backward_in_blocks(_backward, arrays, rows, seq, w_ih, states, (4 * H,),
                                        dh_seq, _host.first, add_dw_hr if projected else None)
        dh_out = dh_seq if need_dh else empty_grad(y)
        return LSTMGrads(sums.dx, dh0, dc0, sums.dw_ih, sums.dw_hh, sums.db, dw_hr, dh_out)

"""LSTM (with optional projection), cpu backend: the whole sequence in one compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.lstm` (m_t = o ⊙ tanh(c_t), the
output before the projection), and with recurrent dropout and zoneout those of
:mod:`rnnlab.reference.lstm_masked` (d the dropout multiplier, k^h and k^c the zoneout
shares, c̃_t the cell before zoneout, m_t = o ⊙ tanh(c̃_t)). One set of training loops
serves both families: :class:`CpuLSTM` passes no masks, and the masked steps
(:mod:`._masks`) are branches taken once per sample and step, not per element.

Per step: one product u_{t-1}·W_hhᵀ (u_{t-1} = d ⊙ h_{t-1}, h_{t-1} without dropout)
added into the gate buffer, which already holds x_t·W_ihᵀ + b (one GEMM for all steps,
before the loop), then one vectorised pass over the gates. Saved for backward: the
activated gates (T,B,4H) and c_t (T,B,H) (and c̃_t with masks), zero at padding steps —
the same contract as :mod:`rnnlab.backends.contract`. The kernels address every
per-step tensor as rows (:class:`._host.Rows`), so the plain cell serves the padded and
the packed layout alike; the masks (T,B,·) are read by step and sample (a masked call is
never packed).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import empty_grad, project_inputs, sum_bias, weight_grad
from rnnlab.backends.contract import (
    LSTMForward,
    LSTMGrads,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    MaskedLSTMForward,
    MaskedLSTMSaved,
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
)
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._masks import add_dropped, dropped, keep_row, unzone, zone
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, sigmoid, tanh
from rnnlab.backends.cpu._parallel import (
    block_step,
    chunk_step,
    clear_step,
    inference_chunk,
    plan,
    previous_row,
    project_chunk,
    row_parts,
    run_together,
    split_units,
    unit_range,
    unit_split_finished,
    valid_prefix,
)
from rnnlab.backends.cpu._sync import ABANDONED, LONG_WAIT, cycles, finish_step, step_flags


# The per-sample passes are separate compiled functions, not inlined into the batch loop:
# inlined there, LLVM kept the scalar version of the loop (10x slower per cell:
# benchmarks/results/cpu-tuning.md).
@kernel(**KERNEL_OPTIONS)
def _cell(act, rec, c, c_out, m):
    """One sample's step: ``act`` (4H,) input pre-activations in, activated gates out;
    ``rec`` (4H,) the recurrent pre-activations; c (H,) the cell state, updated;
    c_out (H,) ← c_t; m (H,) ← o ⊙ tanh(c_t)."""
    H = c.shape[0]
    for j in range(H):
        i = sigmoid(act[j] + rec[j])
        f = sigmoid(act[H + j] + rec[H + j])
        g = tanh(act[2 * H + j] + rec[2 * H + j])
        o = sigmoid(act[3 * H + j] + rec[3 * H + j])
        c_t = f * c[j] + i * g
        act[j] = i
        act[H + j] = f
        act[2 * H + j] = g
        act[3 * H + j] = o
        c[j] = c_t
        c_out[j] = c_t
        m[j] = o * tanh(c_t)


@kernel(**KERNEL_OPTIONS)
def _zoned_cell(act, rec, c, keep, c_tilde, c_out, m):
    """One sample's step, :func:`_cell` with zoneout of the cell state in the same pass
    (one pass rather than the plain cell and a second over c: 3× fewer calls per sample
    and step): c (H,) c_{t-1} in, c_t out (also into c_out); c_tilde (H,) ← c̃_t;
    m (H,) ← o ⊙ tanh(c̃_t); ``keep`` (H,) k^c_t."""
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
def _emit(h_t, probe, y, h):
    """y ← h ← h_t (+ probe, when not empty): one sample's output of a step."""
    if probe.shape[0] > 0:
        for j in range(h_t.shape[0]):
            v = h_t[j] + probe[j]
            y[j] = v
            h[j] = v
    else:
        for j in range(h_t.shape[0]):
            y[j] = h_t[j]
            h[j] = h_t[j]


@kernel(**KERNEL_OPTIONS)
def _forward(gates, c_seq, c_tilde_seq, y, h, c, w_hh, w_hr, lengths, base, padded, probe,
             drop, keep_h, p_h, keep_c, p_c, reverse, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence, its
    per-step arrays as rows (``base``, ``padded``: :class:`._host.Rows`). gates (·, 4H)
    holds x·W_ihᵀ + b on entry, the activated gates on exit; h (B,P) and c (B,H) hold
    the initial state on entry, the final state on exit. The masked cell when
    c_tilde_seq is not empty (it receives c̃_t), with the masks as in
    :class:`._host.MaskArrays`; the plain cell when it is (and the masks are)."""
    T, G = base.shape[0] - 1, gates.shape[1]
    H = G // 4
    P = h.shape[1]
    n = rows.shape[0]
    dtype = gates.dtype
    projected = w_hr.shape[0] > 0
    masked = c_tilde_seq.shape[0] > 0
    dropping = drop.shape[0] > 0
    hh_op = prepare(w_hh, n, True)  # u (n,P) · W_hhᵀ
    hr_op = prepare(w_hr, n, True)  # m (n,H) · W_hrᵀ
    h_rows = np.empty((n, P), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    u_rows = np.empty((n if dropping else 0, P), dtype=dtype)  # d ⊙ h_{t-1}
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
        first = base[t]
        clear_step(gates, first, rows, live, padded)
        clear_step(c_seq, first, rows, live, padded)
        clear_step(y, first, rows, live, padded)
        clear_step(c_tilde_seq, first, rows, live, padded)  # (nothing when empty: plain cell)
        if live == 0:
            continue
        if dropping:
            for k in range(live):
                dropped(drop[rows[k]], h_rows[k], u_rows[k])
        matmul(u_src[:live], hh_op, rec[:live])
        for k in range(live):
            b = rows[k]
            r = first + b
            if masked:
                _zoned_cell(gates[r], rec[k], c[b], keep_row(keep_c, t, b, const_c),
                            c_tilde_seq[r], c_seq[r], m[k])
            else:
                _cell(gates[r], rec[k], c[b], c_seq[r], m[k])
        h_tilde = m
        if projected:
            matmul(m[:live], hr_op, h_proj[:live])  # (live, P)
            h_tilde = h_proj
        for k in range(live):
            b = rows[k]
            r = first + b
            probe_row = probe[r] if probe.shape[0] > 0 else no_row
            if masked:  # h_t = k ⊙ h_{t-1} + (1 - k) ⊙ h̃_t
                zone(h_rows[k], h_tilde[k], keep_row(keep_h, t, b, const_h), h_rows[k])
                _emit(h_rows[k], probe_row, y[r], h_rows[k])
            else:
                _emit(h_tilde[k], probe_row, y[r], h_rows[k])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer(x, y, h, c, w_ih, bias, w_hh, w_hr, lengths, base, padded, reverse, rows, chunk):
    """Inference over batch rows ``rows`` (longest first), x and y as rows
    (:class:`._host.Rows`): y ← the outputs; h (B,P) and c (B,H) hold the initial state
    on entry, the final state on exit.

    The input projection runs here, ``chunk`` steps at a time, for the rows still inside
    their sequence only, into a buffer that stays in cache; no activation is kept."""
    T, I = base.shape[0] - 1, x.shape[1]
    G = w_ih.shape[0]
    H = G // 4
    P = h.shape[1]
    n = rows.shape[0]
    dtype = x.dtype
    projected = w_hr.shape[0] > 0
    hh_op = prepare(w_hh, n, True)
    hr_op = prepare(w_hr, n, True)
    h_rows = np.empty((n, P), dtype=dtype)
    c_rows = np.empty((n, H), dtype=dtype)
    for k in range(n):
        h_rows[k] = h[rows[k]]
        c_rows[k] = c[rows[k]]
    x_buf = np.empty((chunk * n, I), dtype=dtype)
    ih_op = prepare(w_ih, chunk * n, True)  # x (rows, I) · W_ihᵀ
    pre = np.empty((chunk * n, G), dtype=dtype)  # x·W_ihᵀ + b of the chunk's valid rows
    start = np.zeros(chunk + 1, dtype=np.int64)  # pre[start[i]:start[i+1]]: step i's rows
    rec = np.empty((n, G), dtype=dtype)
    m = np.empty((n, H), dtype=dtype)
    c_out = np.empty(H, dtype=dtype)  # (c_t again: an alias of c_rows would stop vectorising)
    h_proj = np.empty((n, P), dtype=dtype)
    no_probe = np.zeros(0, dtype=dtype)
    for s0 in range(0, T, chunk):
        steps = min(chunk, T - s0)
        project_chunk(x, base, lengths, rows, s0, steps, reverse, ih_op, bias, x_buf, pre, start)
        for i in range(steps):
            t, live = chunk_step(start, s0, i, T, reverse)
            clear_step(y, base[t], rows, live, padded)
            if live == 0:
                continue
            matmul(h_rows[:live], hh_op, rec[:live])
            for k in range(live):
                _cell(pre[start[i] + k], rec[k], c_rows[k], c_out, m[k])
            h_t = m
            if projected:
                matmul(m[:live], hr_op, h_proj[:live])
                h_t = h_proj
            for k in range(live):
                _emit(h_t[k], no_probe, y[base[t] + rows[k]], h_rows[k])
    for k in range(n):
        h[rows[k]] = h_rows[k]
        c[rows[k]] = c_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer_units(x, y, h, c, w_ih, bias, w_hh, lengths, base, padded, reverse, rows, part,
                 parts, flags, h_buf, timing, chunk):
    """Inference in which the threads split each step's hidden units (LSTM without
    projection): thread ``part`` of ``parts`` owns units [j0, j1) — its rows of W_ih and
    W_hh, its share of every product — for all samples ``rows`` (longest first).

    h_{t-1} of all units lives in h_buf (2, n, H), by step parity, filled in row order
    by the caller for the first step; each step every thread writes its units of the
    next slot and waits at :func:`._sync.finish_step` for the others. timing[part] ←
    (cycles spent in long waits, cycles of the whole call). Used at B = 1, which a split by
    samples cannot divide (see :func:`._parallel.split_units`). A wait past its bound
    abandons the call (:mod:`._sync`): the part stops and the caller runs it again.
    """
    began = cycles()
    T, I = base.shape[0] - 1, x.shape[1]
    G = w_ih.shape[0]
    H = G // 4
    n = rows.shape[0]
    dtype = x.dtype
    long_waits = 0
    j0, j1 = unit_range(H, part, parts)
    u = j1 - j0
    wi = np.empty((4 * u, I), dtype=dtype)  # gate blocks [i, f, g, o] of units j0..j1
    wh = np.empty((4 * u, H), dtype=dtype)
    b = np.empty(4 * u, dtype=dtype)
    for gate in range(4):
        wi[gate * u : (gate + 1) * u] = w_ih[gate * H + j0 : gate * H + j1]
        wh[gate * u : (gate + 1) * u] = w_hh[gate * H + j0 : gate * H + j1]
        b[gate * u : (gate + 1) * u] = bias[gate * H + j0 : gate * H + j1]
    hh_op = prepare(wh, n, True)
    c_rows = np.empty((n, u), dtype=dtype)
    for k in range(n):
        c_rows[k] = c[rows[k], j0:j1]
    x_buf = np.empty((chunk * n, I), dtype=dtype)
    ih_op = prepare(wi, chunk * n, True)  # x (rows, I) · W_ihᵀ
    pre = np.empty((chunk * n, 4 * u), dtype=dtype)
    start = np.zeros(chunk + 1, dtype=np.int64)
    rec = np.empty((n, 4 * u), dtype=dtype)
    m = np.empty((n, u), dtype=dtype)
    c_out = np.empty(u, dtype=dtype)
    done = 0  # steps finished
    for s0 in range(0, T, chunk):
        steps = min(chunk, T - s0)
        project_chunk(x, base, lengths, rows, s0, steps, reverse, ih_op, b, x_buf, pre, start)
        for i in range(steps):
            t, live = chunk_step(start, s0, i, T, reverse)
            cur = h_buf[done % 2]
            nxt = h_buf[(done + 1) % 2]
            for k in range(live, n):  # past its length: h carries, output is zero
                nxt[k, j0:j1] = cur[k, j0:j1]
                if padded:
                    y[base[t] + rows[k], j0:j1] = 0
            if live > 0:
                matmul(cur[:live], hh_op, rec[:live])
                for k in range(live):
                    _cell(pre[start[i] + k], rec[k], c_rows[k], c_out, m[k])
                    nxt[k, j0:j1] = m[k]
                    y[base[t] + rows[k], j0:j1] = m[k]
            done += 1
            waited = finish_step(flags, part, parts, done)
            if waited == ABANDONED:  # the caller runs the call again on one thread
                return
            if waited > LONG_WAIT:
                long_waits += waited
    last = h_buf[done % 2]
    for k in range(n):
        h[rows[k], j0:j1] = last[k, j0:j1]
        c[rows[k], j0:j1] = c_rows[k]
    timing[part, 0] = long_waits
    timing[part, 1] = cycles() - began


@kernel(**KERNEL_OPTIONS)
def _cell_backward(act, c_t, c_prev, dm, dc, dpre):
    """One sample's step backwards: gates ``act`` (4H,), c_t and c_{t-1} (H,), dm (H,)
    the gradient of m_t = o ⊙ tanh(c_t); dc (H,) holds dL/dc_t from step t+1 on entry and
    dL/dc_{t-1} on exit; dpre (4H,) ← gradients of the pre-activations."""
    H = c_t.shape[0]
    u = one(act)
    for j in range(H):
        i = act[j]
        f = act[H + j]
        g = act[2 * H + j]
        o = act[3 * H + j]
        tanh_c = tanh(c_t[j])
        do = dm[j] * tanh_c  # m = o ⊙ tanh(c)
        dc_t = dc[j] + dm[j] * o * (u - tanh_c * tanh_c)  # from h_t and from c_{t+1}
        di = dc_t * g  # c = f ⊙ c_prev + i ⊙ g
        dg = dc_t * i
        df = dc_t * c_prev[j]
        dpre[j] = di * i * (u - i)  # σ' = σ(1 - σ)
        dpre[H + j] = df * f * (u - f)
        dpre[2 * H + j] = dg * (u - g * g)  # tanh' = 1 - tanh²
        dpre[3 * H + j] = do * o * (u - o)
        dc[j] = dc_t * f


@kernel(**KERNEL_OPTIONS)
def _zoned_cell_backward(act, c_tilde, c_prev, dm, dc, keep, dpre):
    """One sample's step backwards, :func:`_cell_backward` with zoneout of the cell
    state: c̃_t and c_{t-1} (H,), dm (H,) the gradient of m_t = o ⊙ tanh(c̃_t), ``keep``
    (H,) k^c_t; dc (H,) holds dL/dc_t on entry and dL/dc_{t-1} on exit; dpre (4H,) ←
    gradients of the pre-activations."""
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
def _backward(dy, dh, dc, gates, c_seq, c_tilde_seq, c0, w_hh, w_hr, lengths, base, padded,
              drop, keep_h, p_h, keep_c, p_c, reverse, dgates, dh_seq, t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first), every
    per-step array as rows (:class:`._host.Rows`). dh (B,P), dc (B,H): the gradients
    flowing into the block (dL/dh_n, dL/dc_n for the first block) on entry, out of it on
    exit (dL/dh0, dL/dc0 after the last). Writes the block's pre-activation gradients
    dgates (the block's rows, 4H) and, if dh_seq is not empty, the total dL/dh_t.
    Masked or plain as :func:`_forward`: each state's gradient splits into the
    candidate's share (1 - k) ⊙ dh and the previous state's k ⊙ dh."""
    G = gates.shape[1]
    H = G // 4
    P = dh.shape[1]
    n = rows.shape[0]
    dtype = gates.dtype
    projected = w_hr.shape[0] > 0
    masked = c_tilde_seq.shape[0] > 0
    dropping = drop.shape[0] > 0
    hh_op = prepare(w_hh, n, False)  # dpre (n,4H) · W_hh
    hr_op = prepare(w_hr, n, False)  # dh̃ (n,P) · W_hr
    dh_total = np.empty((n, P), dtype=dtype)
    dh_tilde = np.empty((n if masked else 0, P), dtype=dtype)
    dm = np.empty((n, H), dtype=dtype)
    dpre = np.empty((n, G), dtype=dtype)
    du = np.empty((n, P), dtype=dtype)  # W_hhᵀ dpre, the gradient of u_{t-1} = d ⊙ h_{t-1}
    no_row = np.zeros(0, dtype=dtype)
    const_h = np.full(P, p_h, dtype=dtype)  # the share of every step when keep_h is empty
    const_c = np.full(H, p_c, dtype=dtype)
    for s in range(t_end - t_begin):
        t, t_prev, _ = block_step(s, t_begin, t_end, reverse)
        live = valid_prefix(lengths, rows, t)
        first, block_first = base[t], base[t] - base[t_begin]
        # padding: no gradient; dh, dc pass through unchanged
        clear_step(dgates, block_first, rows, live, padded)
        clear_step(dh_seq, first, rows, live, padded)
        if live == 0:
            continue
        for k in range(live):
            b = rows[k]
            r = first + b
            for j in range(P):
                dh_total[k, j] = dy[r, j] + dh[b, j]  # from the output and from t+1
            if dh_seq.shape[0] > 0:
                dh_seq[r, :] = dh_total[k]
            if masked:  # dh̃ reaches the cell, k ⊙ dh stays in dh for h_{t-1}
                unzone(dh_total[k], keep_row(keep_h, t, b, const_h), dh_tilde[k], dh[b])
        d_m = dh_tilde if masked else dh_total
        if projected:
            matmul(d_m[:live], hr_op, dm[:live])  # h̃ = W_hr m
            d_m = dm
        for k in range(live):
            b = rows[k]
            r = first + b
            c_prev = previous_row(c_seq, c0, base, t_prev, lengths, b)
            if masked:
                _zoned_cell_backward(gates[r], c_tilde_seq[r], c_prev, d_m[k], dc[b],
                                     keep_row(keep_c, t, b, const_c), dpre[k])
            else:
                _cell_backward(gates[r], c_seq[r], c_prev, d_m[k], dc[b], dpre[k])
            dgates[block_first + b, :] = dpre[k]
        matmul(dpre[:live], hh_op, du[:live])  # W_hh u_{t-1}
        for k in range(live):
            b = rows[k]
            if masked:
                add_dropped(drop[b] if dropping else no_row, du[k], dh[b])
            else:
                dh[b] = du[k]


def _run_forward(
    w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks | None,
    h_probe: Tensor | None,
) -> MaskedLSTMForward:
    """The forward of :class:`CpuLSTM` and :class:`CpuMaskedLSTM`; ``masks`` None: the
    plain cell, with an empty c_tilde."""
    (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
    T, B, base, padded = _host.rows_of(seq)
    H, P = c0.shape[-1], h0.shape[-1]
    # Padding rows of x go through the projection unmasked (no copy of x): whatever they
    # hold, the kernel never reads their projected rows, and it zeroes their outputs.
    with torch.no_grad():
        gates = project_inputs(x.detach(), w_ih.detach(), sum_bias(b_ih, b_hh)).contiguous()
    steps_shape = x.shape[:-1]  # (T, B) or packed (N,)
    y = x.new_empty(*steps_shape, P)
    c_seq = x.new_empty(*steps_shape, H)
    c_tilde = x.new_empty((0, 0) if masks is None else (*steps_shape, H))
    h_n, c_n = _host.state_copy(h0), _host.state_copy(c0)
    steps = lengths_array(lengths, T, B)
    flops = 2.0 * (4 * H * P + (H * P if w_hr is not None else 0))  # per sample and step
    arrays = (_host.flat(gates), _host.flat(c_seq), _host.flat(c_tilde), _host.flat(y),
              h_n.numpy(), c_n.numpy(), as_array(w_hh), _host.optional_weight(w_hr, x),
              steps, base, padded, _host.flat_optional(h_probe, x),
              *_host.mask_arrays(masks, x.dtype), reverse)
    _host.run_kernel(_forward, arrays, plan(steps, T, flops))
    return MaskedLSTMForward(y, h_n, c_n, gates, c_seq, c_tilde)


def _run_backward(
    w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks | None,
    saved: MaskedLSTMSaved, dy: Tensor, d_state: LSTMState, need_dh: bool, need_dx: bool,
) -> LSTMGrads:
    """The backward of :class:`CpuLSTM` and :class:`CpuMaskedLSTM`; ``masks`` None: the
    plain cell (``saved.c_tilde`` empty)."""
    (x, lengths, reverse), (h0, c0), (y, gates, c_seq, c_tilde) = seq, state, saved
    (w_ih, w_hh, w_hr), (dh_n, dc_n) = (w.w_ih, w.w_hh, w.w_hr), d_state
    T, B, base, padded = _host.rows_of(seq)
    H, P = c0.shape[-1], h0.shape[-1]
    projected = w_hr is not None
    drop_h, keep_h = (None, None) if masks is None else (masks.drop_h, masks.keep_h)
    dh_seq = torch.empty_like(y) if (need_dh or projected) else _host.no_dh(y)
    dh0, dc0 = _host.state_copy(dh_n), _host.state_copy(dc_n)
    steps = lengths_array(lengths, T, B)
    rows = plan(steps, T, 2.0 * (4 * H * P + (H * P if projected else 0)))
    arrays = (_host.flat(dy), dh0.numpy(), dc0.numpy(), _host.flat(gates), _host.flat(c_seq),
              _host.flat(c_tilde), as_array(c0), as_array(w_hh),
              _host.optional_weight(w_hr, x), steps, base, padded,
              *_host.mask_arrays(masks, x.dtype), reverse)
    dw_hr = torch.zeros_like(w_hr) if projected else empty_grad(y)
    rows_of = _host.flat_rows

    def add_dw_hr(buffers: list[Tensor], r0: int, r1: int) -> None:
        # dW_hr = Σ_t dh̃_t m_tᵀ, dh̃_t = (1 - k^h_t) ⊙ dh_t, m_t = o ⊙ tanh(c̃_t)
        c_candidate = c_seq if masks is None else c_tilde
        m = rows_of(gates)[r0:r1, 3 * H :] * torch.tanh(rows_of(c_candidate)[r0:r1])
        dh_tilde = rows_of(dh_seq)[r0:r1]
        if keep_h is not None:
            dh_tilde = dh_tilde * (1 - rows_of(keep_h)[r0:r1])
        dw_hr.add_(weight_grad(dh_tilde, m))

    # W_hh reads u_{t-1} = d ⊙ h_{t-1}: its gradient pairs dpre_t with the dropped states
    states = (rows_of(_host.dropped(drop_h, y)), _host.dropped(drop_h, h0))
    sums = _host.backward_in_blocks(_backward, arrays, rows, seq, w_ih, states, (4 * H,),
                                    dh_seq, _host.first, need_dx,
                                    add_dw_hr if projected else None, by_rows=True)
    dh_out = dh_seq if need_dh else empty_grad(y)
    return LSTMGrads(sums.dx, dh0, dc0, sums.dw_ih, sums.dw_hh, sums.db, dw_hr, dh_out)


class CpuLSTM(PackedRows):
    """LSTM, compiled (:class:`rnnlab.backends.contract.LSTMKernels`)."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
    ) -> LSTMForward:
        y, h_n, c_n, gates, c_seq, _ = _run_forward(w, seq, state, None, h_probe)
        return LSTMForward(y, h_n, c_n, gates, c_seq)

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LSTMGrads:
        no_c_tilde = saved.y.new_empty(0, 0)
        return _run_backward(w, seq, state, None, MaskedLSTMSaved(*saved, no_c_tilde), dy,
                             d_state, need_dh, need_dx)

    def infer(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState
    ) -> tuple[Tensor, Tensor, Tensor]:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh, w_hr), (h0, c0) = seq, w, state
        T, B, base, padded = _host.rows_of(seq)
        H, P = c0.shape[-1], h0.shape[-1]
        y = x.new_empty(*x.shape[:-1], P)
        h_n, c_n = _host.state_copy(h0), _host.state_copy(c0)
        steps = lengths_array(lengths, T, B)
        G, I = 4 * H, x.shape[-1]
        flops = 2.0 * (G * (P + I) + (H * P if w_hr is not None else 0))  # per sample and step
        bias = bias_array(sum_bias(b_ih, b_hh), G, x.dtype)
        parts = split_units(B, T, H, flops) if w_hr is None else 1
        if parts > 1:
            order = row_parts(steps, 1)[0]
            h_buf = np.empty((2, B, H), dtype=bias.dtype)
            h_buf[0] = h_n.numpy()[order]
            arrays = (_host.flat(x), _host.flat(y), h_n.numpy(), c_n.numpy(), as_array(w_ih),
                      bias, as_array(w_hh), steps, base, padded, reverse, order)
            flags = step_flags(parts)
            timing = np.zeros((parts, 2), dtype=np.int64)
            chunk = inference_chunk(B)
            if run_together(lambda part: _infer_units(*arrays, int(part[0]), parts, flags, h_buf,
                                                       timing, chunk),
                            [np.array([p]) for p in range(parts)]):
                if unit_split_finished(flags, timing):
                    return y, h_n, c_n
                h_n.copy_(h0.detach())  # abandoned: again from the initial state, one thread
                c_n.copy_(c0.detach())
        arrays = (_host.flat(x), _host.flat(y), h_n.numpy(), c_n.numpy(), as_array(w_ih), bias,
                  as_array(w_hh), _host.optional_weight(w_hr, x), steps, base, padded, reverse)
        _host.run_infer(_infer, arrays, plan(steps, T, flops))
        return y, h_n, c_n


class CpuMaskedLSTM:
    """LSTM with recurrent dropout and zoneout, compiled
    (:class:`rnnlab.backends.contract.MaskedLSTMKernels`): :class:`CpuLSTM`'s loops with
    the masks."""

    def forward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        h_probe: Tensor | None,
    ) -> MaskedLSTMForward:
        return _run_forward(w, seq, state, masks, h_probe)

    def backward(
        self, w: LSTMWeights, seq: Sequence, state: LSTMState, masks: Masks,
        saved: MaskedLSTMSaved, dy: Tensor, d_state: LSTMState, need_dh: bool,
        need_dx: bool,
    ) -> LSTMGrads:
        return _run_backward(w, seq, state, masks, saved, dy, d_state, need_dh, need_dx)

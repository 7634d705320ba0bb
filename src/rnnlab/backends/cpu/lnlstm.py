"""Layer-normalised LSTM, cpu backend: the whole sequence in one compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.lnlstm`: a_t =
LN(W_ih x_t; γ_ih) + b_ih + LN(W_hh h_{t-1}; γ_hh) + b_hh, the LSTM's gates and cell,
m_t = o_t ⊙ tanh(n_t) with n_t = LN(c_t; γ_c, β_c), h_t = m_t.

Forward: W_ih x_t for all steps is one GEMM, normalised row by row in one compiled call
before the loop (b_ih + b_hh are that normalisation's β); per step the compiled
loop runs h_{t-1}·W_hhᵀ (:mod:`._blas`), then per sample one pass normalising it, the
gates, c_t and LN(c_t). Saved for backward, as for the LSTM: the activated gates
(T,B,4H) and c_t (T,B,H), zero at padding steps.

Backward, in blocks of time steps (:func:`._host.backward_in_blocks`): before each
block the three normalisations are recomputed for its steps (one GEMM each for W_ih x
and W_hh h_{t-1}, then compiled rows); the compiled loop then walks the block
back (per step one product dp^hh·W_hh) writing the gradients of W_ih x_t, of
W_hh h_{t-1}, of a_t and of n_t, which become dx, dW_ih, dW_hh (one GEMM each per
block) and the biases' and gains' gradients (:func:`add_gain_grads`, one compiled pass
per block over each pre-activation gradient).

The compiled normalisation helpers (:func:`moments`, :func:`layer_norm`,
:func:`normalise_backward`, :func:`layer_norm_rows`, :func:`normalise_rows`) are shared
with :mod:`.lngru`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba.extending import overload
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    previous_states,
    project_inputs,
    sum_bias,
    valid_mask,
    zero_padding,
)
from rnnlab.backends._layer_norm import EPS
from rnnlab.backends.contract import (
    LNLSTMGrads,
    LNLSTMWeights,
    LSTMForward,
    LSTMSaved,
    LSTMState,
    Sequence,
)
from rnnlab.backends.cpu import _host
from rnnlab.backends.cpu._blas import matmul, prepare
from rnnlab.backends.cpu._common import as_array, bias_array, lengths_array, optional_array
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, sigmoid, tanh
from rnnlab.backends.cpu._parallel import (
    block_step,
    chunk_step,
    clear_padding,
    padded_base,
    plan,
    previous,
    project_chunk,
    valid_prefix,
)
from rnnlab.backends.cpu.lstm import _emit


def _like(arr, x):
    """The scalar x in the dtype of ``arr`` (inside compiled code)."""
    raise NotImplementedError("only callable from Numba-compiled code")


@overload(_like, inline="always")
def _like_impl(arr, x):
    kind = np.dtype(str(arr.dtype)).type
    return lambda arr, x: kind(x)


@kernel(**KERNEL_OPTIONS)
def moments(v, eps):
    """(μ, rstd) of v's n entries, in v's dtype: μ = Σ v / n, rstd = 1 / √(σ² + ε) with
    σ² = Σ (v - μ)² / n (two passes: no cancellation)."""
    n = v.shape[0]
    u = one(v)
    total = u - u
    for j in range(n):
        total += v[j]
    mean = _like(v, total / n)
    square = u - u
    for j in range(n):
        d = v[j] - mean
        square += d * d
    return mean, _like(v, 1.0 / math.sqrt(square / n + eps))


@kernel(**KERNEL_OPTIONS)
def layer_norm(v, gamma, beta, eps, out):
    """out ← LN(v; γ, β) = γ ⊙ (v - μ) · rstd + β for one vector (``out`` may be ``v``)."""
    mean, rstd = moments(v, eps)
    for j in range(v.shape[0]):
        out[j] = gamma[j] * ((v[j] - mean) * rstd) + beta[j]


@kernel(**KERNEL_OPTIONS)
def normalise_backward(gamma, d, v_hat, rstd, out):
    """out ← ∂L/∂v for one vector, given d = ∂L/∂(γ ⊙ v̂): with e = γ ⊙ d, LN⁻¹'(e; v̂,
    rstd) = rstd ⊙ (e - mean(e) - v̂ ⊙ mean(e ⊙ v̂)) (the reference's)."""
    n = d.shape[0]
    u = one(d)
    total = u - u
    cross = u - u
    for j in range(n):
        e = gamma[j] * d[j]
        total += e
        cross += e * v_hat[j]
    mean_e = _like(d, total / n)
    mean_ev = _like(d, cross / n)
    for j in range(n):
        out[j] = rstd * (gamma[j] * d[j] - mean_e - v_hat[j] * mean_ev)


@kernel(**KERNEL_OPTIONS)
def layer_norm_rows(v, gamma, beta, eps):
    """Every row of v (R, n), in place: LN(row; γ, β) (the whole sequence's input side,
    vectorised along each row: faster than torch's layer_norm here)."""
    for r in range(v.shape[0]):
        layer_norm(v[r], gamma, beta, eps, v[r])


@kernel(**KERNEL_OPTIONS)
def normalise_rows(v, eps, rstd):
    """Every row of v (R, n), in place: v̂ = (v - μ) · rstd; rstd (R,) ← each row's
    (backward's recomputed normalisations: torch's var_mean took most of its time)."""
    for r in range(v.shape[0]):
        mean, rstd[r] = moments(v[r], eps)
        for j in range(v.shape[1]):
            v[r, j] = (v[r, j] - mean) * rstd[r]


@kernel(**KERNEL_OPTIONS)
def add_gain_grads(d, v_a, v_b, db, dgamma_a, dgamma_b):
    """One block's gradients of the parameters of a normalisation's output γ ⊙ v̂ + β,
    given d (R, n), its gradient: db += Σ_r d, dgamma_a += Σ_r d ⊙ v_a and, unless v_b is
    empty, dgamma_b += Σ_r d ⊙ v_b (the LSTM's two gains share one pre-activation). One
    pass over d, summed in float64 (torch's mul-then-sum read d once per sum and wrote a
    (R, n) product each time)."""
    n = d.shape[1]
    sum_d = np.zeros(n, dtype=np.float64)
    sum_a = np.zeros(n, dtype=np.float64)
    sum_b = np.zeros(n, dtype=np.float64)
    if v_b.shape[0] > 0:
        for r in range(d.shape[0]):
            for j in range(n):
                g = np.float64(d[r, j])
                sum_d[j] += g
                sum_a[j] += g * v_a[r, j]
                sum_b[j] += g * v_b[r, j]
        for j in range(n):
            dgamma_b[j] += sum_b[j]
    else:
        for r in range(d.shape[0]):
            for j in range(n):
                g = np.float64(d[r, j])
                sum_d[j] += g
                sum_a[j] += g * v_a[r, j]
    for j in range(n):
        db[j] += sum_d[j]
        dgamma_a[j] += sum_a[j]


def gain_grads(d: Tensor, v_a: Tensor, v_b: Tensor | None, db: Tensor, dgamma_a: Tensor,
               dgamma_b: Tensor | None = None) -> None:
    """:func:`add_gain_grads` on tensors (T', B, n) into db, dgamma_a (and dgamma_b)."""
    n = d.shape[-1]
    rows = (as_array(d).reshape(-1, n), as_array(v_a).reshape(-1, n))
    dtype = rows[0].dtype
    add_gain_grads(*rows, np.empty((0, n), dtype) if v_b is None else as_array(v_b).reshape(-1, n),
                   db.numpy(), dgamma_a.numpy(),
                   np.empty(0, dtype) if dgamma_b is None else dgamma_b.numpy())


# Per-sample passes are separate compiled functions: inlined into the batch loop, LLVM
# kept their scalar version (see lstm._cell).
@kernel(**KERNEL_OPTIONS)
def _cell(act, rec, gamma_hh, gamma_c, beta_c, eps, c, c_out, m):
    """One sample's step: ``act`` (4H,) holds LN(W_ih x_t; γ_ih) + b_ih + b_hh on entry,
    the activated gates on exit; ``rec`` (4H,) = W_hh h_{t-1}; c (H,) the cell state,
    updated; c_out (H,) ← c_t; m (H,) ← o ⊙ tanh(LN(c_t; γ_c, β_c))."""
    H = c.shape[0]
    mean, rstd = moments(rec, eps)  # LN(W_hh h_{t-1}) over all 4H entries
    for j in range(H):
        i = sigmoid(act[j] + gamma_hh[j] * ((rec[j] - mean) * rstd))
        f = sigmoid(act[H + j] + gamma_hh[H + j] * ((rec[H + j] - mean) * rstd))
        g = tanh(act[2 * H + j] + gamma_hh[2 * H + j] * ((rec[2 * H + j] - mean) * rstd))
        o = sigmoid(act[3 * H + j] + gamma_hh[3 * H + j] * ((rec[3 * H + j] - mean) * rstd))
        c_t = f * c[j] + i * g
        act[j] = i
        act[H + j] = f
        act[2 * H + j] = g
        act[3 * H + j] = o
        c[j] = c_t
        c_out[j] = c_t
    mean_c, rstd_c = moments(c, eps)
    for j in range(H):
        m[j] = act[3 * H + j] * tanh(gamma_c[j] * ((c[j] - mean_c) * rstd_c) + beta_c[j])


@kernel(**KERNEL_OPTIONS)
def _forward(gates, c_seq, y, h, c, w_hh, gamma_hh, gamma_c, beta_c, eps, lengths, probe,
             reverse, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence.
    gates (T,B,4H) holds LN(W_ih x; γ_ih) + b_ih + b_hh on entry, the activated gates on
    exit; c_seq (T,B,H) ← c_t; y (T,B,H) ← outputs; h, c (B,H) hold the initial state on
    entry, the final state on exit. probe (T,B,H) or empty."""
    T, G = gates.shape[0], gates.shape[2]
    H = G // 4
    n = rows.shape[0]
    dtype = gates.dtype
    hh_op = prepare(w_hh, n, True)  # h (n,H) · W_hhᵀ
    h_rows = np.empty((n, H), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    rec = np.empty((n, G), dtype=dtype)  # W_hh h_{t-1}
    m = np.empty((n, H), dtype=dtype)
    no_probe = np.zeros(0, dtype=dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        live = valid_prefix(lengths, rows, t)  # rows[:live] are inside their sequence
        clear_padding(gates, t, rows, live)
        clear_padding(c_seq, t, rows, live)
        clear_padding(y, t, rows, live)
        if live == 0:
            continue
        matmul(h_rows[:live], hh_op, rec[:live])
        for k in range(live):
            b = rows[k]
            _cell(gates[t, b], rec[k], gamma_hh, gamma_c, beta_c, eps, c[b], c_seq[t, b], m[k])
            _emit(m[k], probe[t, b] if probe.shape[0] > 0 else no_probe, y[t, b], h_rows[k])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer(x, y, h, c, w_ih, gamma_ih, bias, w_hh, gamma_hh, gamma_c, beta_c, eps, lengths,
           reverse, rows, chunk):
    """Inference over batch rows ``rows`` (longest first): y (T,B,H) ← the outputs; h, c
    (B,H) hold the initial state on entry, the final state on exit. The input projection
    and its normalisation run here, ``chunk`` steps at a time for the running rows only
    (as :func:`.lstm._infer`); no activation is kept. ``bias`` = b_ih + b_hh."""
    T, I = x.shape[0], x.shape[2]
    G = w_ih.shape[0]
    H = G // 4
    n = rows.shape[0]
    dtype = x.dtype
    hh_op = prepare(w_hh, n, True)
    h_rows = np.empty((n, H), dtype=dtype)
    c_rows = np.empty((n, H), dtype=dtype)
    for k in range(n):
        h_rows[k] = h[rows[k]]
        c_rows[k] = c[rows[k]]
    x_buf = np.empty((chunk * n, I), dtype=dtype)
    ih_op = prepare(w_ih, chunk * n, True)  # x (rows, I) · W_ihᵀ
    pre = np.empty((chunk * n, G), dtype=dtype)  # the chunk's W_ih x, then its LN + bias
    start = np.zeros(chunk + 1, dtype=np.int64)  # pre[start[i]:start[i+1]]: step i's rows
    no_bias = np.zeros(G, dtype=dtype)
    rec = np.empty((n, G), dtype=dtype)
    m = np.empty((n, H), dtype=dtype)
    c_out = np.empty(H, dtype=dtype)  # (c_t again: an alias of c_rows would stop vectorising)
    no_probe = np.zeros(0, dtype=dtype)
    x_rows = x.reshape((T * x.shape[1], I))  # (the projection reads rows)
    base = padded_base(T, x.shape[1])
    for s0 in range(0, T, chunk):
        steps = min(chunk, T - s0)
        project_chunk(x_rows, base, lengths, rows, s0, steps, reverse, ih_op, no_bias, x_buf,
                      pre, start)
        for r in range(start[steps]):
            layer_norm(pre[r], gamma_ih, bias, eps, pre[r])
        for i in range(steps):
            t, live = chunk_step(start, s0, i, T, reverse)
            clear_padding(y, t, rows, live)
            if live == 0:
                continue
            matmul(h_rows[:live], hh_op, rec[:live])
            for k in range(live):
                _cell(pre[start[i] + k], rec[k], gamma_hh, gamma_c, beta_c, eps, c_rows[k],
                      c_out, m[k])
                _emit(m[k], no_probe, y[t, rows[k]], h_rows[k])
    for k in range(n):
        h[rows[k]] = h_rows[k]
        c[rows[k]] = c_rows[k]


@kernel(**KERNEL_OPTIONS)
def _cell_backward(act, c_prev, c_hat, rstd_c, dh, gamma_c, beta_c, dc, dn, da):
    """One sample's step backwards through the gates and LN(c_t): ``act`` (4H,) the gates,
    c_prev (H,) c_{t-1}, c_hat (H,) ĉ_t with its rstd_c, dh (H,) the total ∂L/∂h_t; dc
    (H,) holds ∂L/∂c_t from step t+1 on entry and ∂L/∂c_{t-1} on exit; dn (H,) ← ∂L/∂n_t;
    da (4H,) ← ∂L/∂a_t."""
    H = c_prev.shape[0]
    u = one(act)
    for j in range(H):
        o = act[3 * H + j]
        tanh_n = tanh(gamma_c[j] * c_hat[j] + beta_c[j])
        dn[j] = dh[j] * o * (u - tanh_n * tanh_n)  # m = o ⊙ tanh(n)
        da[3 * H + j] = dh[j] * tanh_n * o * (u - o)  # do ⊙ σ'
    normalise_backward(gamma_c, dn, c_hat, rstd_c, da[:H])  # ∂L/∂c_t through n_t, in da[:H]
    for j in range(H):
        i = act[j]
        f = act[H + j]
        g = act[2 * H + j]
        dc_t = dc[j] + da[j]  # from c_{t+1} and from n_t
        da[j] = dc_t * g * i * (u - i)  # c = f ⊙ c_prev + i ⊙ g; σ' = σ(1 - σ)
        da[H + j] = dc_t * c_prev[j] * f * (u - f)
        da[2 * H + j] = dc_t * i * (u - g * g)  # tanh' = 1 - tanh²
        dc[j] = dc_t * f


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, dc, gates, c_seq, c0, w_hh, gamma_ih, gamma_hh, gamma_c, beta_c,
              lengths, reverse, v_ih, rstd_ih, v_hh, rstd_hh, c_hat, rstd_c, dp_ih, dp_hh, da,
              dn, dh_seq, t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first). dh, dc
    (B,H): the gradients flowing into the block (∂L/∂h_n, ∂L/∂c_n for the first block) on
    entry, out of it on exit (∂L/∂h0, ∂L/∂c0 after the last). The block's normalisations
    v̂^ih, v̂^hh (k, B, 4H), ĉ (k, B, H) and their rstd (k, B, 1) come in (k = t_end -
    t_begin); out go, per step of the block, dp_ih and dp_hh (k, B, 4H): the gradients of
    W_ih x_t and W_hh h_{t-1}; da (k, B, 4H) of a_t; dn (k, B, H) of n_t; and, if dh_seq
    is not empty, the total ∂L/∂h_t (T,B,H). Zero at padding steps."""
    G = gates.shape[2]
    H = G // 4
    n = rows.shape[0]
    dtype = gates.dtype
    hh_op = prepare(w_hh, n, False)  # dp_hh (n,4H) · W_hh
    dh_total = np.empty((n, H), dtype=dtype)
    dp_rows = np.empty((n, G), dtype=dtype)  # dp_hh of the live rows, in their order
    dh_prev = np.empty((n, H), dtype=dtype)
    for s in range(t_end - t_begin):
        t, t_prev, i = block_step(s, t_begin, t_end, reverse)
        live = valid_prefix(lengths, rows, t)
        # padding: no gradient; dh, dc pass through unchanged
        clear_padding(dp_ih, i, rows, live)
        clear_padding(dp_hh, i, rows, live)
        clear_padding(da, i, rows, live)
        clear_padding(dn, i, rows, live)
        clear_padding(dh_seq, t, rows, live)
        if live == 0:
            continue
        for k in range(live):
            b = rows[k]
            for j in range(H):
                dh_total[k, j] = dy[t, b, j] + dh[b, j]  # from the output and from t+1
            if dh_seq.shape[0] > 0:
                dh_seq[t, b, :] = dh_total[k]
            c_prev = previous(c_seq, c0, t_prev, lengths, b)
            _cell_backward(gates[t, b], c_prev, c_hat[i, b], rstd_c[i, b, 0], dh_total[k],
                           gamma_c, beta_c, dc[b], dn[i, b], da[i, b])
            normalise_backward(gamma_ih, da[i, b], v_ih[i, b], rstd_ih[i, b, 0], dp_ih[i, b])
            normalise_backward(gamma_hh, da[i, b], v_hh[i, b], rstd_hh[i, b, 0], dp_rows[k])
            dp_hh[i, b, :] = dp_rows[k]
        matmul(dp_rows[:live], hh_op, dh_prev[:live])  # p^hh = W_hh h_{t-1}
        for k in range(live):
            dh[rows[k]] = dh_prev[k]


class CpuLNLSTM:
    """Layer-normalised LSTM, compiled (:class:`rnnlab.backends.contract.LNLSTMKernels`)."""

    def forward(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState, h_probe: Tensor | None
    ) -> LSTMForward:
        (x, lengths, reverse), (h0, c0) = seq, state
        T, B, _ = x.shape
        H = c0.shape[-1]
        # LN(W_ih x_t; γ_ih) + b_ih + b_hh for all steps, straight into the gate buffer.
        # Padding rows of x go through unmasked (no copy of x): the kernel never reads them
        # and zeroes their outputs.
        with torch.no_grad():
            gates = project_inputs(x.detach(), w.w_ih.detach(), None).contiguous()
        layer_norm_rows(gates.numpy().reshape(T * B, 4 * H), as_array(w.gamma_ih),
                        bias_array(sum_bias(w.b_ih, w.b_hh), 4 * H, x.dtype), EPS)
        y = x.new_empty(T, B, H)
        c_seq = x.new_empty(T, B, H)
        h_n, c_n = _host.state_copy(h0), _host.state_copy(c0)
        steps = lengths_array(lengths, T, B)
        probe = optional_array(h_probe, 3, x.dtype)
        arrays = (gates.numpy(), c_seq.numpy(), y.numpy(), h_n.numpy(), c_n.numpy(),
                  as_array(w.w_hh), as_array(w.gamma_hh), as_array(w.gamma_c),
                  bias_array(w.beta_c, H, x.dtype), EPS, steps, probe, reverse)
        _host.run_kernel(_forward, arrays, plan(steps, T, 2.0 * 4 * H * H))
        return LSTMForward(y, h_n, c_n, gates, c_seq)

    def backward(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState, saved: LSTMSaved, dy: Tensor,
        d_state: LSTMState, need_dh: bool, need_dx: bool,
    ) -> LNLSTMGrads:
        (x, lengths, reverse), (h0, c0), (y, gates, c_seq) = seq, state, saved
        (dh_n, dc_n) = d_state
        T, B, _ = x.shape
        H = c0.shape[-1]
        dh_seq = torch.empty_like(y) if need_dh else _host.no_dh(y)
        dh0, dc0 = _host.state_copy(dh_n), _host.state_copy(dc_n)
        steps = lengths_array(lengths, T, B)
        rows = plan(steps, T, 2.0 * 4 * H * H)
        arrays = (as_array(dy), dh0.numpy(), dc0.numpy(), as_array(gates), as_array(c_seq),
                  as_array(c0), as_array(w.w_hh), as_array(w.gamma_ih), as_array(w.gamma_hh),
                  as_array(w.gamma_c), bias_array(w.beta_c, H, x.dtype), steps, reverse)
        norms = BlockNorms(seq, w.w_ih, w.w_hh, y, h0, c_seq)
        db, dgamma_ih, dgamma_hh = (x.new_zeros(4 * H) for _ in range(3))
        dgamma_c, dbeta_c = x.new_zeros(H), x.new_zeros(H)

        def after_block(buffers: list[Tensor], t0: int, t1: int) -> None:
            _, _, da, dn = buffers
            v_ih, v_hh, c_hat = norms.last
            # a_t = γ_ih ⊙ v̂^ih + γ_hh ⊙ v̂^hh + b_ih + b_hh; n_t = γ_c ⊙ ĉ_t + β_c
            gain_grads(da, v_ih, v_hh, db, dgamma_ih, dgamma_hh)
            gain_grads(dn, c_hat, None, dbeta_c, dgamma_c)

        # The first buffer, dp_ih, gives dx and dW_ih; its column sums (a bias before the
        # normalisation, which this cell has not) are not used: db comes from da.
        sums = _host.backward_in_blocks(
            _backward, arrays, rows, seq, w.w_ih, (y, h0), (4 * H, 4 * H, 4 * H, H), dh_seq,
            _host.second, need_dx, after_block, norms.block,
        )
        return LNLSTMGrads(sums.dx, dh0, dc0, sums.dw_ih, sums.dw_hh, db, dgamma_ih, dgamma_hh,
                           dgamma_c, dbeta_c, dh_seq if need_dh else empty_grad(y))

    def infer(
        self, w: LNLSTMWeights, seq: Sequence, state: LSTMState
    ) -> tuple[Tensor, Tensor, Tensor]:
        (x, lengths, reverse), (h0, c0) = seq, state
        T, B, I = x.shape
        H = c0.shape[-1]
        y = x.new_empty(T, B, H)
        h_n, c_n = _host.state_copy(h0), _host.state_copy(c0)
        steps = lengths_array(lengths, T, B)
        arrays = (as_array(x), y.numpy(), h_n.numpy(), c_n.numpy(), as_array(w.w_ih),
                  as_array(w.gamma_ih), bias_array(sum_bias(w.b_ih, w.b_hh), 4 * H, x.dtype),
                  as_array(w.w_hh), as_array(w.gamma_hh), as_array(w.gamma_c),
                  bias_array(w.beta_c, H, x.dtype), EPS, steps, reverse)
        _host.run_infer(_infer, arrays, plan(steps, T, 2.0 * 4 * H * (H + I)))
        return y, h_n, c_n


class BlockNorms:
    """The normalisations of the layer-normalised cells (LSTM and GRU) for one block of
    backward's time steps, recomputed from x, the outputs and (LSTM) the cell states:
    v̂^ih = LN(W_ih x_t), v̂^hh = LN(W_hh h_{t-1}) (one GEMM each) and ĉ_t = LN(c_t), with
    their rstd. :meth:`block` gives the kernel's arrays; ``last`` keeps the block's v̂^ih,
    v̂^hh (and ĉ) for the gains' gradients."""

    def __init__(self, seq: Sequence, w_ih: Tensor, w_hh: Tensor, y: Tensor, h0: Tensor,
                 c_seq: Tensor | None = None) -> None:
        self.x, self.w_ih, self.w_hh, self.c_seq = seq.x, w_ih, w_hh, c_seq
        self.valid = valid_mask(seq.lengths, seq.x.shape[0])
        self.h_prev = previous_states(y, h0, seq.lengths, seq.reverse)
        self.last: tuple[Tensor, ...] = ()

    def block(self, t0: int, t1: int) -> tuple[np.ndarray, ...]:
        """(v̂^ih, rstd^ih, v̂^hh, rstd^hh[, ĉ, rstd^c]) of steps t0 <= t < t1, as arrays.
        Padding steps of x are zeroed first (they may hold anything, NaN included)."""
        x = self.x[t0:t1]
        if self.valid is not None:
            x = zero_padding(x, self.valid[t0:t1])
        values = [project_inputs(x, self.w_ih, None), project_inputs(self.h_prev[t0:t1],
                                                                      self.w_hh, None)]
        if self.c_seq is not None:
            values.append(self.c_seq[t0:t1].clone())  # 0 at padding (c_seq is)
        self.last = tuple(v.contiguous() for v in values)
        arrays = []
        for v in self.last:  # normalised in place
            rows = v.numpy().reshape(-1, v.shape[-1])
            rstd = np.empty((*v.shape[:-1], 1), dtype=rows.dtype)
            normalise_rows(rows, EPS, rstd.reshape(-1))
            arrays += [rows.reshape(v.shape), rstd]
        return tuple(arrays)

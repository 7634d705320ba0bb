"""Layer-normalised GRU, cpu backend: the whole sequence in one compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.lngru`: u_t =
LN(W_ih x_t; γ_ih) + b_ih, v_t = LN(W_hh h_{t-1}; γ_hh) + b_hh, then torch.nn's GRU step
(reset after the recurrent product) on u_t and v_t.

Forward: u_t for all steps is one GEMM straight into the gate buffer, normalised there
row by row in one compiled call before the loop; per step the compiled loop runs
h_{t-1}·W_hhᵀ (:mod:`._blas`), then per sample one pass normalising it and the gates.
Saved for backward, as for the GRU: r, z, n and hn = v_n (T,B,4H), zero at padding.
Backward as :mod:`.lnlstm`'s: per block of time steps the two normalisations are
recomputed (one GEMM each), the compiled loop walks the block back (one product
dp^hh·W_hh per step), and the block's gradients become the weights' (one GEMM each) and
the biases' and gains' (:func:`.lnlstm.add_gain_grads`, one compiled pass each).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import empty_grad
from rnnlab.backends._layer_norm import EPS
from rnnlab.backends.contract import (
    GRUForward,
    GRUSaved,
    LNGRUGrads,
    LNGRUWeights,
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
    block_step,
    chunk_step,
    clear_padding,
    padded_base,
    plan,
    previous,
    project_chunk,
    valid_prefix,
)
from rnnlab.backends.cpu.gru import _state_backward, _update
from rnnlab.backends.cpu.lnlstm import (
    BlockNorms,
    gain_grads,
    layer_norm,
    layer_norm_rows,
    moments,
    normalise_backward,
)


# Per-sample passes are separate compiled functions: inlined into the batch loop, LLVM
# kept their scalar version (see lstm._cell).
@kernel(**KERNEL_OPTIONS)
def _gates(act, rec, gamma_hh, b_hh, eps):
    """One sample's gates: ``act`` (4H,) holds u_t in [:3H] on entry, [r, z, n, hn] on
    exit; ``rec`` (3H,) = W_hh h_{t-1}, normalised here into v_t = LN(rec; γ_hh) + b_hh."""
    H = act.shape[0] // 4
    mean, rstd = moments(rec, eps)  # over all 3H entries
    for j in range(H):
        r = sigmoid(act[j] + gamma_hh[j] * ((rec[j] - mean) * rstd) + b_hh[j])
        z = sigmoid(act[H + j] + gamma_hh[H + j] * ((rec[H + j] - mean) * rstd) + b_hh[H + j])
        hn = gamma_hh[2 * H + j] * ((rec[2 * H + j] - mean) * rstd) + b_hh[2 * H + j]
        act[j] = r
        act[H + j] = z
        act[2 * H + j] = tanh(act[2 * H + j] + r * hn)
        act[3 * H + j] = hn


@kernel(**KERNEL_OPTIONS)
def _forward(gates, y, h, w_hh, gamma_hh, b_hh, eps, lengths, probe, reverse, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence.
    gates (T,B,4H) holds u_t = LN(W_ih x_t; γ_ih) + b_ih in [..., :3H] on entry, the gates
    [r, z, n, hn] on exit; y (T,B,H) ← outputs; h (B,H) holds h0 on entry and h_n on exit;
    probe (T,B,H) or empty."""
    T = gates.shape[0]
    H = gates.shape[2] // 4
    n = rows.shape[0]
    dtype = gates.dtype
    hh_op = prepare(w_hh, n, True)  # h (n,H) · W_hhᵀ -> (n, 3H)
    h_rows = np.empty((n, H), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    rec = np.empty((n, 3 * H), dtype=dtype)  # W_hh h_{t-1}
    no_probe = np.zeros(0, dtype=dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        m = valid_prefix(lengths, rows, t)  # rows[:m] are inside their sequence
        clear_padding(gates, t, rows, m)
        clear_padding(y, t, rows, m)
        if m == 0:
            continue
        matmul(h_rows[:m], hh_op, rec[:m])
        for k in range(m):
            b = rows[k]
            _gates(gates[t, b], rec[k], gamma_hh, b_hh, eps)
            _update(gates[t, b], h_rows[k], probe[t, b] if probe.shape[0] > 0 else no_probe,
                    y[t, b])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer(x, y, h, w_ih, gamma_ih, b_ih, w_hh, gamma_hh, b_hh, eps, lengths, reverse, rows,
           chunk):
    """Inference over batch rows ``rows`` (longest first): y (T,B,H) ← the outputs; h (B,H)
    holds h0 on entry and h_n on exit. The input projection runs here, ``chunk`` steps at
    a time (see :func:`.lstm._infer`), each row normalised as it is read; no activation
    is kept."""
    T, I = x.shape[0], x.shape[2]
    G = w_ih.shape[0]
    H = G // 3
    n = rows.shape[0]
    dtype = x.dtype
    hh_op = prepare(w_hh, n, True)
    h_rows = np.empty((n, H), dtype=dtype)
    for k in range(n):
        h_rows[k] = h[rows[k]]
    x_buf = np.empty((chunk * n, I), dtype=dtype)
    ih_op = prepare(w_ih, chunk * n, True)  # x (rows, I) · W_ihᵀ
    pre = np.empty((chunk * n, G), dtype=dtype)  # W_ih x of the chunk's valid rows
    start = np.zeros(chunk + 1, dtype=np.int64)
    no_bias = np.zeros(G, dtype=dtype)
    act = np.empty((n, 4 * H), dtype=dtype)  # r, z, n, hn of the step
    rec = np.empty((n, G), dtype=dtype)
    no_probe = np.zeros(0, dtype=dtype)
    x_rows = x.reshape((T * x.shape[1], I))  # (the projection reads rows)
    base = padded_base(T, x.shape[1])
    for s0 in range(0, T, chunk):
        steps = min(chunk, T - s0)
        project_chunk(x_rows, base, lengths, rows, s0, steps, reverse, ih_op, no_bias, x_buf,
                      pre, start)
        for i in range(steps):
            t, m = chunk_step(start, s0, i, T, reverse)
            clear_padding(y, t, rows, m)
            if m == 0:
                continue
            matmul(h_rows[:m], hh_op, rec[:m])
            for k in range(m):
                layer_norm(pre[start[i] + k], gamma_ih, b_ih, eps, act[k, :G])  # u_t
                _gates(act[k], rec[k], gamma_hh, b_hh, eps)
                _update(act[k], h_rows[k], no_probe, y[t, rows[k]])
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _step_backward(act, dh, h_prev, du, dv):
    """One sample's step backwards through the gates, given dh the total ∂L/∂h_t:
    du (3H,) ← ∂L/∂u_t, dv (3H,) ← ∂L/∂v_t."""
    H = h_prev.shape[0]
    u = one(act)
    for j in range(H):
        r = act[j]
        z = act[H + j]
        n = act[2 * H + j]
        dn = dh[j] * (u - z)  # h = (1 - z) ⊙ n + z ⊙ h_prev
        dz = dh[j] * (h_prev[j] - n)
        da_n = dn * (u - n * n)  # n = tanh(u_n + r ⊙ hn); tanh' = 1 - tanh²
        du[j] = da_n * act[3 * H + j] * r * (u - r)  # σ' = σ(1 - σ)
        du[H + j] = dz * z * (u - z)
        du[2 * H + j] = da_n
        dv[j] = du[j]
        dv[H + j] = du[H + j]
        dv[2 * H + j] = da_n * r


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, y, h0, gates, w_hh, gamma_ih, gamma_hh, lengths, reverse, v_ih, rstd_ih,
              v_hh, rstd_hh, dp_ih, dp_hh, du, dv, dh_seq, t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first). dh (B,H)
    holds the gradient flowing into the block on entry (∂L/∂h_n first) and out of it on
    exit (∂L/∂h0 after the last). The block's normalisations v̂^ih, v̂^hh (k, B, 3H) and
    their rstd (k, B, 1) come in (k = t_end - t_begin); out go, per step of the block,
    dp_ih and dp_hh (k, B, 3H): the gradients of W_ih x_t and W_hh h_{t-1}; du, dv
    (k, B, 3H) of u_t and v_t; and, if dh_seq is not empty, the total ∂L/∂h_t (T,B,H).
    Zero at padding steps."""
    G = du.shape[2]
    H = G // 3
    n = rows.shape[0]
    dtype = du.dtype
    hh_op = prepare(w_hh, n, False)  # dp_hh (n,3H) · W_hh
    dp_rows = np.empty((n, G), dtype=dtype)  # dp_hh of the live rows, in their order
    dh_prev = np.empty((n, H), dtype=dtype)
    for s in range(t_end - t_begin):
        t, t_prev, i = block_step(s, t_begin, t_end, reverse)
        m = valid_prefix(lengths, rows, t)
        # padding: no gradient; dh passes through unchanged
        clear_padding(dp_ih, i, rows, m)
        clear_padding(dp_hh, i, rows, m)
        clear_padding(du, i, rows, m)
        clear_padding(dv, i, rows, m)
        clear_padding(dh_seq, t, rows, m)
        if m == 0:
            continue
        for k in range(m):
            b = rows[k]
            h_prev = previous(y, h0, t_prev, lengths, b)
            dh[b] += dy[t, b]  # total gradient of h_t: output and step t+1
            if dh_seq.shape[0] > 0:
                dh_seq[t, b, :] = dh[b]
            _step_backward(gates[t, b], dh[b], h_prev, du[i, b], dv[i, b])
            normalise_backward(gamma_ih, du[i, b], v_ih[i, b], rstd_ih[i, b, 0], dp_ih[i, b])
            normalise_backward(gamma_hh, dv[i, b], v_hh[i, b], rstd_hh[i, b, 0], dp_rows[k])
            dp_hh[i, b, :] = dp_rows[k]
        matmul(dp_rows[:m], hh_op, dh_prev[:m])  # p^hh = W_hh h_{t-1}
        for k in range(m):
            b = rows[k]  # dL/dh_{t-1} = dh ⊙ z + W_hhᵀ dp^hh
            _state_backward(dh[b], gates[t, b, H : 2 * H], dh_prev[k], dh_prev[k],
                            gates[t, b, :H], True)


class CpuLNGRU:
    """Layer-normalised GRU, compiled (:class:`rnnlab.backends.contract.LNGRUKernels`)."""

    def forward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None
    ) -> GRUForward:
        x, lengths, reverse = seq
        T, B, _ = x.shape
        H = h0.shape[-1]
        gates = x.new_empty(T, B, 4 * H)
        # u_t for all steps into the gate buffer's first 3H columns (one GEMM, then the rows
        # normalised in place). Padding rows of x go through unmasked (no copy of x): the
        # kernel never reads them, and zeroes them.
        u = gates.numpy().reshape(T * B, 4 * H)[:, : 3 * H]
        project_into(as_array(x).reshape(T * B, x.shape[2]), as_array(w.w_ih),
                     bias_array(None, 3 * H, x.dtype), u)
        layer_norm_rows(u, as_array(w.gamma_ih), bias_array(w.b_ih, 3 * H, x.dtype), EPS)
        y = x.new_empty(T, B, H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (gates.numpy(), y.numpy(), h_n.numpy(), as_array(w.w_hh),
                  as_array(w.gamma_hh), bias_array(w.b_hh, 3 * H, x.dtype), EPS, steps,
                  optional_array(h_probe, 3, x.dtype), reverse)
        _host.run_kernel(_forward, arrays, plan(steps, T, 2.0 * 3 * H * H))
        return GRUForward(y, h_n, gates)

    def backward(
        self, w: LNGRUWeights, seq: Sequence, h0: Tensor, saved: GRUSaved, dy: Tensor,
        dh_n: Tensor, need_dh: bool, need_dx: bool,
    ) -> LNGRUGrads:
        (x, lengths, _), (y, gates) = seq, saved
        T, B, _ = x.shape
        H = h0.shape[-1]
        G = 3 * H
        dh_seq = torch.empty_like(y) if need_dh else _host.no_dh(y)
        dh0 = _host.state_copy(dh_n)
        steps = lengths_array(lengths, T, B)
        arrays = (as_array(dy), dh0.numpy(), as_array(y), as_array(h0), as_array(gates),
                  as_array(w.w_hh), as_array(w.gamma_ih), as_array(w.gamma_hh), steps,
                  seq.reverse)
        norms = BlockNorms(seq, w.w_ih, w.w_hh, y, h0)
        db_ih, db_hh, dgamma_ih, dgamma_hh = (x.new_zeros(G) for _ in range(4))

        def after_block(buffers: list[Tensor], t0: int, t1: int) -> None:
            _, _, du, dv = buffers
            v_ih, v_hh = norms.last
            gain_grads(du, v_ih, None, db_ih, dgamma_ih)  # u = γ_ih ⊙ v̂^ih + b_ih
            gain_grads(dv, v_hh, None, db_hh, dgamma_hh)  # v = γ_hh ⊙ v̂^hh + b_hh

        # dp_ih gives dx and dW_ih; its column sums are not used (db_ih comes from du).
        sums = _host.backward_in_blocks(
            _backward, arrays, plan(steps, T, 2.0 * G * H), seq, w.w_ih, (y, h0), (G,) * 4,
            dh_seq, _host.second, need_dx, after_block, norms.block,
        )
        return LNGRUGrads(sums.dx, dh0, sums.dw_ih, sums.dw_hh, db_ih, db_hh, dgamma_ih,
                          dgamma_hh, dh_seq if need_dh else empty_grad(y))

    def infer(self, w: LNGRUWeights, seq: Sequence, h0: Tensor) -> tuple[Tensor, Tensor]:
        x, lengths, reverse = seq
        T, B, I = x.shape
        H = h0.shape[-1]
        G = 3 * H
        y = x.new_empty(T, B, H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (as_array(x), y.numpy(), h_n.numpy(), as_array(w.w_ih), as_array(w.gamma_ih),
                  bias_array(w.b_ih, G, x.dtype), as_array(w.w_hh), as_array(w.gamma_hh),
                  bias_array(w.b_hh, G, x.dtype), EPS, steps, reverse)
        _host.run_infer(_infer, arrays, plan(steps, T, 2.0 * G * (H + I)))
        return y, h_n

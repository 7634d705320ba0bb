"""Elman RNN, cpu backend: the whole sequence in one compiled loop.

The equations and their symbols are those of :mod:`rnnlab.reference.rnn`.

Per step: h_{t-1}·W_hhᵀ added into the buffer that holds x_t·W_ihᵀ + b (one GEMM for
all steps, before the loop), then one vectorised pass. The pre-activations a (T,B,H), zero
at padding, are returned for recording; backward reads the outputs y — as
:mod:`rnnlab.backends.contract`. The kernels address every per-step tensor as rows
(:class:`._host.Rows`), so they serve the padded and the packed layout alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import (
    empty_grad,
    project_inputs,
    sum_bias,
)
from rnnlab.backends.contract import (
    AddsInputGrad,
    PackedRows,
    RNNForward,
    RNNGrads,
    RNNSaved,
    RNNWeights,
    Sequence,
    activation_of,
)
from rnnlab.backends.cpu import _host
from rnnlab.backends.cpu._blas import matmul, prepare
from rnnlab.backends.cpu._common import (
    as_array,
    bias_array,
    lengths_array,
)
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, tanh
from rnnlab.backends.cpu._parallel import (
    block_step,
    chunk_step,
    clear_step,
    plan,
    project_chunk,
    valid_prefix,
)


# Per-sample passes are separate compiled functions: inlined into the batch loop, LLVM
# kept their scalar version (see lstm._cell).
@kernel(**KERNEL_OPTIONS)
def _activate(a, rec, y, relu):
    """a ← a + rec (the pre-activation, kept for backward); y ← tanh(a) or relu(a)."""
    if relu:
        zero = one(a) - one(a)
        for j in range(a.shape[0]):
            v = a[j] + rec[j]
            a[j] = v
            y[j] = max(v, zero)
    else:
        for j in range(a.shape[0]):
            v = a[j] + rec[j]
            a[j] = v
            y[j] = tanh(v)


@kernel(**KERNEL_OPTIONS)
def _add(a, b):
    """a += b, one sample."""
    for j in range(a.shape[0]):
        a[j] += b[j]


@kernel(**KERNEL_OPTIONS)
def _activate_backward(f, dh, da, relu):
    """da ← dh ⊙ act'(a), one sample, from the activation's value f = act(a)."""
    u = one(f)
    zero = u - u
    if relu:
        for j in range(f.shape[0]):
            da[j] = dh[j] if f[j] > zero else zero  # relu'(a) = [a > 0] = [f > 0]
    else:
        for j in range(f.shape[0]):
            da[j] = dh[j] * (u - f[j] * f[j])  # tanh'(a) = 1 - tanh²(a) = 1 - f²


@kernel(**KERNEL_OPTIONS)
def _forward(a_seq, y, h, w_hh, lengths, base, padded, probe, reverse, relu, rows):
    """Batch rows ``rows`` (longest first, see :mod:`._parallel`) of the sequence, its
    per-step arrays as rows (``base``, ``padded``: :class:`._host.Rows`). a_seq holds
    x·W_ihᵀ + b on entry, the pre-activations on exit; h (B,H) holds h0 on entry and h_n
    on exit."""
    T, H = base.shape[0] - 1, a_seq.shape[1]
    n = rows.shape[0]
    dtype = a_seq.dtype
    hh_op = prepare(w_hh, n, True)  # h (n,H) · W_hhᵀ
    h_rows = np.empty((n, H), dtype=dtype)  # h_{t-1} of the part's rows, in their order
    for k in range(n):
        h_rows[k] = h[rows[k]]
    rec = np.empty((n, H), dtype=dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        m = valid_prefix(lengths, rows, t)  # rows[:m] are inside their sequence
        first = base[t]
        clear_step(a_seq, first, rows, m, padded)
        clear_step(y, first, rows, m, padded)
        if m == 0:
            continue
        matmul(h_rows[:m], hh_op, rec[:m])  # (m, H)
        for k in range(m):
            r = first + rows[k]
            _activate(a_seq[r], rec[k], h_rows[k], relu)
            if probe.shape[0] > 0:
                _add(h_rows[k], probe[r])
            y[r, :] = h_rows[k]
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _infer(x, y, h, w_ih, bias, w_hh, lengths, base, padded, reverse, relu, rows, chunk):
    """Inference over batch rows ``rows`` (longest first), x and y as rows: y ← the
    outputs; h (B,H) holds h0 on entry and h_n on exit. The input projection runs here,
    ``chunk`` steps at a time (see :func:`.lstm._infer`); no activation is kept."""
    T, I = base.shape[0] - 1, x.shape[1]
    H = w_ih.shape[0]
    n = rows.shape[0]
    dtype = x.dtype
    hh_op = prepare(w_hh, n, True)
    h_rows = np.empty((n, H), dtype=dtype)
    for k in range(n):
        h_rows[k] = h[rows[k]]
    x_buf = np.empty((chunk * n, I), dtype=dtype)
    ih_op = prepare(w_ih, chunk * n, True)  # x (rows, I) · W_ihᵀ
    pre = np.empty((chunk * n, H), dtype=dtype)  # x·W_ihᵀ + b of the chunk's valid rows
    start = np.zeros(chunk + 1, dtype=np.int64)
    rec = np.empty((n, H), dtype=dtype)
    for s0 in range(0, T, chunk):
        steps = min(chunk, T - s0)
        project_chunk(x, base, lengths, rows, s0, steps, reverse, ih_op, bias, x_buf, pre, start)
        for i in range(steps):
            t, m = chunk_step(start, s0, i, T, reverse)
            clear_step(y, base[t], rows, m, padded)
            if m == 0:
                continue
            matmul(h_rows[:m], hh_op, rec[:m])
            for k in range(m):
                _activate(pre[start[i] + k], rec[k], h_rows[k], relu)
                y[base[t] + rows[k], :] = h_rows[k]
    for k in range(n):
        h[rows[k]] = h_rows[k]


@kernel(**KERNEL_OPTIONS)
def _backward(dy, dh, f_seq, w_hh, lengths, base, padded, reverse, relu, da_seq, dh_seq,
              t_begin, t_end, rows):
    """Steps t_begin <= t < t_end backwards, batch rows ``rows`` (longest first), every
    per-step array as rows (:class:`._host.Rows`). dh (B,H) holds the gradient flowing
    into the block on entry (dL/dh_n first) and out of it on exit (dL/dh0 after the
    last); f_seq the activation's values act(a_t). Writes da_seq (the block's rows, H),
    the gradients of the pre-activations, and (if not empty) dh_seq, the total
    dL/dh_t."""
    H = f_seq.shape[1]
    n = rows.shape[0]
    dtype = f_seq.dtype
    hh_op = prepare(w_hh, n, False)  # da (n,H) · W_hh
    da = np.empty((n, H), dtype=dtype)
    dh_prev = np.empty((n, H), dtype=dtype)
    for s in range(t_end - t_begin):
        t, _, _ = block_step(s, t_begin, t_end, reverse)
        m = valid_prefix(lengths, rows, t)
        first, block_first = base[t], base[t] - base[t_begin]
        # padding: no gradient; dh passes through unchanged
        clear_step(da_seq, block_first, rows, m, padded)
        clear_step(dh_seq, first, rows, m, padded)
        if m == 0:
            continue
        for k in range(m):
            b = rows[k]
            r = first + b
            _add(dh[b], dy[r])  # total gradient of h_t: output and step t+1
            if dh_seq.shape[0] > 0:
                dh_seq[r, :] = dh[b]
            _activate_backward(f_seq[r], dh[b], da[k], relu)
            da_seq[block_first + b, :] = da[k]
        matmul(da[:m], hh_op, dh_prev[:m])  # W_hh h_{t-1}
        for k in range(m):
            dh[rows[k]] = dh_prev[k]


class CpuRNN(PackedRows, AddsInputGrad):
    """Elman RNN, compiled (:class:`rnnlab.backends.contract.RNNKernels`)."""

    def forward(
        self, w: RNNWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None, relu: bool
    ) -> RNNForward:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, base, padded = _host.rows_of(seq)
        H = h0.shape[-1]
        # Padding rows of x go through the projection unmasked (no copy of x): whatever they
        # hold, the kernel never reads their projected rows, and it zeroes their outputs.
        with torch.no_grad():
            a_seq = project_inputs(x.detach(), w_ih.detach(), sum_bias(b_ih, b_hh)).contiguous()
        y = torch.empty_like(a_seq)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (_host.flat(a_seq), _host.flat(y), h_n.numpy(), as_array(w_hh), steps, base,
                  padded, _host.flat_optional(h_probe, x), reverse, relu)
        _host.run_kernel(_forward, arrays, plan(steps, T, 2.0 * H * H))
        return RNNForward(y, h_n, a_seq)

    def backward(
        self, w: RNNWeights, seq: Sequence, h0: Tensor, saved: RNNSaved, dy: Tensor,
        dh_n: Tensor, relu: bool, need_dh: bool, need_dx: bool, dx_into: Tensor | None = None,
    ) -> RNNGrads:
        (_, lengths, reverse), (w_ih, w_hh), y = seq, (w.w_ih, w.w_hh), saved.y
        T, B, base, padded = _host.rows_of(seq)
        H = h0.shape[-1]
        dh_seq = torch.empty_like(y) if need_dh else _host.no_dh(y)
        dh0 = _host.state_copy(dh_n)
        steps = lengths_array(lengths, T, B)
        rows = plan(steps, T, 2.0 * H * H)
        arrays = (_host.flat(dy), dh0.numpy(), _host.flat(activation_of(saved)),
                  as_array(w_hh), steps, base, padded, reverse, relu)
        sums = _host.backward_in_blocks(_backward, arrays, rows, seq, w_ih,
                                        (_host.flat_rows(y), h0), (H,), dh_seq, _host.first,
                                        need_dx, by_rows=True, dx_into=dx_into)
        return RNNGrads(sums.dx, dh0, sums.dw_ih, sums.dw_hh, sums.db,
                        dh_seq if need_dh else empty_grad(y))

    def infer(self, w: RNNWeights, seq: Sequence, h0: Tensor, relu: bool) -> tuple[Tensor, Tensor]:
        (x, lengths, reverse), (w_ih, w_hh, b_ih, b_hh) = seq, w
        T, B, base, padded = _host.rows_of(seq)
        H, I = h0.shape[-1], x.shape[-1]
        y = x.new_empty(*x.shape[:-1], H)
        h_n = _host.state_copy(h0)
        steps = lengths_array(lengths, T, B)
        arrays = (_host.flat(x), _host.flat(y), h_n.numpy(), as_array(w_ih),
                  bias_array(sum_bias(b_ih, b_hh), H, x.dtype), as_array(w_hh), steps, base,
                  padded, reverse, relu)
        _host.run_infer(_infer, arrays, plan(steps, T, 2.0 * H * (H + I)))
        return y, h_n

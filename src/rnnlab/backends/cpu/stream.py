"""Streaming kernel: advance a whole layer stack by a few steps at batch size 1.

One compiled call runs every layer for every step of a chunk: per layer and step, the
input and recurrent matrix-vector products (loops over weights laid out (K, N), see
:func:`._blas._gemv_acc`) and the cell's pointwise pass — the same cell code as the
sequence kernels. Weights of all layers travel in one flat buffer with an offset
table, so the call has few arguments and a short dispatch.

Per layer l, ``table[l, :5]`` holds the start in ``flat`` of: W_ihᵀ (in_l, G), W_hhᵀ
(P, G), the input bias (G,), the recurrent bias (G,), W_hrᵀ (H, P) (LSTM projection, -1
without); ``table[l, 5:]`` = (in_l, G, P, H). ``state`` (2L + 5, W) holds h of each
layer in rows [0, L), c in rows [L, 2L), and five rows of scratch (W ≥ every width).
"""

from __future__ import annotations

from numba import njit

from rnnlab.backends.cpu._blas import _gemv_acc
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, one, sigmoid, tanh
from rnnlab.backends.cpu.lstm import _cell

RNN_TANH, RNN_RELU, LSTM, GRU, GRU_RESET_BEFORE = 0, 1, 2, 3, 4


@njit(inline="always")
def _matrix(flat, start, rows, cols):
    return flat[start : start + rows * cols].reshape((rows, cols))


@kernel(**KERNEL_OPTIONS)
def advance(kind, x, y, flat, table, state):
    """Run steps x (T, I) through the stack; y (T, P_last) ← outputs of the last layer.
    The carried state in ``state`` is updated in place."""
    T = x.shape[0]
    L = table.shape[0]
    h = state[:L]
    c = state[L : 2 * L]
    pre = state[2 * L]  # input pre-activations (and, LSTM/RNN, the sum)
    rec = state[2 * L + 1]  # recurrent pre-activations (GRU)
    r_buf = state[2 * L + 2]
    c_out = state[2 * L + 3]
    inp = state[2 * L + 4]
    u = one(x)
    zero = u - u
    for t in range(T):
        inp[: x.shape[1]] = x[t]
        for layer in range(L):
            o = table[layer]
            I, G, P, H = o[5], o[6], o[7], o[8]
            w_ih = _matrix(flat, o[0], I, G)
            w_hh = _matrix(flat, o[1], P, G)
            b_in = flat[o[2] : o[2] + G]
            b_rec = flat[o[3] : o[3] + G]
            h_l = h[layer, :P]
            a = pre[:G]
            a[:] = b_in
            _gemv_acc(inp[:I], w_ih, a)
            if kind == GRU or kind == GRU_RESET_BEFORE:
                g = rec[:G]
                g[:] = b_rec
                if kind == GRU:
                    _gemv_acc(h_l, w_hh, g)
                    for j in range(H):
                        r = sigmoid(a[j] + g[j])
                        z = sigmoid(a[H + j] + g[H + j])
                        n = tanh(a[2 * H + j] + r * g[2 * H + j])
                        h_l[j] = n + z * (h_l[j] - n)
                else:
                    _gemv_acc(h_l, w_hh[:, : 2 * H], g[: 2 * H])
                    rh = r_buf[:H]
                    for j in range(H):
                        a[j] = sigmoid(a[j] + g[j])  # r
                        a[H + j] = sigmoid(a[H + j] + g[H + j])  # z
                        rh[j] = a[j] * h_l[j]
                    _gemv_acc(rh, w_hh[:, 2 * H :], g[2 * H :])
                    for j in range(H):
                        n = tanh(a[2 * H + j] + g[2 * H + j])
                        h_l[j] = n + a[H + j] * (h_l[j] - n)
            elif kind == LSTM:
                g = rec[:G]
                g[:] = b_rec
                _gemv_acc(h_l, w_hh, g)
                r = r_buf[:H]
                _cell(a, g, c[layer, :H], c_out[:H], r)
                if o[4] < 0:
                    h_l[:] = r
                else:
                    h_l[:] = 0
                    _gemv_acc(r, _matrix(flat, o[4], H, P), h_l)
            else:
                for j in range(G):
                    a[j] += b_rec[j]
                _gemv_acc(h_l, w_hh, a)
                if kind == RNN_RELU:
                    for j in range(H):
                        h_l[j] = max(a[j], zero)
                else:
                    for j in range(H):
                        h_l[j] = tanh(a[j])
            inp[:P] = h_l
        y[t, :] = inp[: y.shape[1]]


@kernel(**KERNEL_OPTIONS)
def advance_one(kind, x, y, flat, table, state):
    """One step: x (I,) -> y (P_last,) (:func:`advance` without the caller's reshapes)."""
    advance(kind, x.reshape((1, x.shape[0])), y.reshape((1, y.shape[0])), flat, table, state)

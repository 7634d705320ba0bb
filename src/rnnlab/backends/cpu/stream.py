"""Streaming on the cpu backend: advance a whole layer stack by a few steps at batch size 1.

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

import numpy as np
import torch
from numba import carray, njit, types
from numba.extending import intrinsic
from torch import Tensor

from rnnlab.backends.contract import StreamSpec
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
    row_buf = state[2 * L + 2]
    c_out = state[2 * L + 3]
    inp = state[2 * L + 4]
    u = one(x)
    zero = u - u
    for t in range(T):
        inp[: x.shape[1]] = x[t]
        for layer in range(L):
            offsets = table[layer]
            I, G, P, H = offsets[5], offsets[6], offsets[7], offsets[8]
            w_ih = _matrix(flat, offsets[0], I, G)
            w_hh = _matrix(flat, offsets[1], P, G)
            b_in = flat[offsets[2] : offsets[2] + G]
            b_rec = flat[offsets[3] : offsets[3] + G]
            h_l = h[layer, :P]
            a = pre[:G]
            a[:] = b_in
            _gemv_acc(inp[:I], w_ih, a)
            if kind == GRU or kind == GRU_RESET_BEFORE:
                rec_g = rec[:G]
                rec_g[:] = b_rec
                if kind == GRU:
                    _gemv_acc(h_l, w_hh, rec_g)
                    for j in range(H):
                        r = sigmoid(a[j] + rec_g[j])
                        z = sigmoid(a[H + j] + rec_g[H + j])
                        n = tanh(a[2 * H + j] + r * rec_g[2 * H + j])
                        h_l[j] = n + z * (h_l[j] - n)
                else:
                    _gemv_acc(h_l, w_hh[:, : 2 * H], rec_g[: 2 * H])
                    rh = row_buf[:H]
                    for j in range(H):
                        a[j] = sigmoid(a[j] + rec_g[j])  # r
                        a[H + j] = sigmoid(a[H + j] + rec_g[H + j])  # z
                        rh[j] = a[j] * h_l[j]
                    _gemv_acc(rh, w_hh[:, 2 * H :], rec_g[2 * H :])
                    for j in range(H):
                        n = tanh(a[2 * H + j] + rec_g[2 * H + j])
                        h_l[j] = n + a[H + j] * (h_l[j] - n)
            elif kind == LSTM:
                rec_g = rec[:G]
                rec_g[:] = b_rec
                _gemv_acc(h_l, w_hh, rec_g)
                m = row_buf[:H]  # m_t = o ⊙ tanh(c_t)
                _cell(a, rec_g, c[layer, :H], c_out[:H], m)
                if offsets[4] < 0:
                    h_l[:] = m
                else:
                    h_l[:] = 0
                    _gemv_acc(m, _matrix(flat, offsets[4], H, P), h_l)
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


@intrinsic
def _pointer_like(typingctx, address, like):
    """The int ``address`` as a pointer to elements of array ``like``'s dtype."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return types.CPointer(like.dtype)(types.int64, like), codegen


@kernel(**KERNEL_OPTIONS)
def advance_one(kind, x_address, y_address, flat, table, state):
    """One step from addresses: x (I,) -> y (P_last,), both contiguous and of ``flat``'s
    dtype. Addresses, not arrays: a tensor's ``data_ptr()`` costs far less than its
    ``.numpy()`` view, and an int argument less dispatch than an array."""
    L = table.shape[0]
    x = carray(_pointer_like(x_address, flat), (1, table[0, 5]))
    y = carray(_pointer_like(y_address, flat), (1, table[L - 1, 7]))
    advance(kind, x, y, flat, table, state)


_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class CpuStream:
    """:class:`rnnlab.backends.contract.StreamKernels` on :func:`advance`."""

    def open(self, spec: StreamSpec, h: Tensor, c: Tensor) -> CpuStreamer:
        return CpuStreamer(spec, h, c)


class CpuStreamer:
    """The stack's weights in one flat buffer with its offset table, and the carried
    state with the kernel's scratch rows in one array (see the module docstring)."""

    def __init__(self, spec: StreamSpec, h: Tensor, c: Tensor) -> None:
        L, P = h.shape
        H = c.shape[1]
        G = _GATES[spec.family] * H
        pieces: list[np.ndarray] = []
        table = []
        position = 0

        def add(array: np.ndarray) -> int:
            nonlocal position
            start = position
            pieces.append(np.ascontiguousarray(array).reshape(-1))
            position += array.size
            return start

        with torch.no_grad():
            for w in spec.layers:
                w_ih, w_hh = (t.detach().numpy() for t in (w.w_ih, w.w_hh))
                zeros = np.zeros(G, dtype=w_ih.dtype)
                b_ih, b_hh = (zeros if b is None else b.detach().numpy() for b in w[2:4])
                if spec.family != "gru":  # one bias for the sum; GRU keeps b_hn apart
                    b_ih, b_hh = b_ih + b_hh, zeros
                starts = [add(w_ih.T), add(w_hh.T), add(b_ih), add(b_hh), -1]
                if spec.family == "lstm" and w.w_hr is not None:
                    starts[4] = add(w.w_hr.detach().numpy().T)
                table.append([*starts, w_ih.shape[1], G, P, H])
        self._flat = np.concatenate(pieces)
        self._table = np.asarray(table, dtype=np.int64)
        if spec.family == "lstm":
            self._kind = LSTM
        elif spec.family == "gru":
            self._kind = GRU if spec.option else GRU_RESET_BEFORE
        else:
            self._kind = RNN_RELU if spec.option else RNN_TANH
        # One array for the kernel: h rows, c rows, then five rows of scratch.
        width = max(spec.layers[0].w_ih.shape[1], G)
        self._state = torch.zeros(2 * L + 5, width, dtype=h.dtype)
        self.h = self._state[:L, :P]
        self.c = self._state[L : 2 * L, :H]
        self.h.copy_(h.detach())
        self.c.copy_(c.detach())
        self._state_np = self._state.numpy()
        self._width = P
        self.step = self._one_step(self._kind, self._flat, self._table, self._state_np, P,
                                   h.dtype)

    @staticmethod
    def _one_step(kind, flat, table, state, width, dtype):
        """``step``: x (I,) contiguous -> (P,). A closure over the kernel's arguments: per
        step, no attribute lookups, no NumPy view of x, one new tensor (the output), one
        compiled call (the step costs a few µs at H = 64; these add up). The output is
        made like a template (``torch.empty_like``): ``torch.empty`` with a ``dtype``
        argument took about twice as long, a third of a step at H = 64."""
        like = torch.empty_like
        template = torch.empty(width, dtype=dtype)

        def step(x: Tensor) -> Tensor:
            y = like(template)
            advance_one(kind, x.data_ptr(), y.data_ptr(), flat, table, state)
            return y

        return step

    def advance(self, x: Tensor) -> Tensor:
        array = x.detach().numpy() if x.is_contiguous() else x.detach().contiguous().numpy()
        y = np.empty((array.shape[0], self._width), dtype=array.dtype)
        advance(self._kind, array, y, self._flat, self._table, self._state_np)
        return torch.from_numpy(y)

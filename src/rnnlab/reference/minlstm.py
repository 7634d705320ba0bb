"""minLSTM (Feng et al. 2024) in float64 NumPy: forward over a sequence and BPTT."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    SequenceCache,
    cell_arguments,
    check_cache,
    input_backward,
    loss_grads,
    sigmoid,
    step_record,
    walk,
    walk_back,
)


@dataclass(frozen=True, eq=False)
class MinLSTMCache(SequenceCache):
    """What minlstm_backward needs from minlstm_forward.

    The fields of every cache (x, h_prev (T, B, H), valid, reverse, gates), and
    w_ih, b_ih   the weights as checked (None: no bias)
    gates   {"f", "i", "h_tilde"}: each (T, B, H), 0 at padding steps
    """

    w_ih: np.ndarray
    b_ih: np.ndarray | None


def minlstm_forward(
    x, h0, w_ih, b_ih=None, *, lengths=None, reverse: bool = False
) -> tuple[np.ndarray, np.ndarray, MinLSTMCache]:
    """Run one direction of a single-layer minLSTM over a sequence.

    At every valid step t of sample b, with the blocks of W and b in the order f, i, h̃:

        f_t  = σ(W_f x_t + b_f)                        forget gate (x_t only)
        i_t  = σ(W_i x_t + b_i)                        input gate (x_t only)
        f'_t = f_t / (f_t + i_t)     i'_t = i_t / (f_t + i_t)      normalised gates
        h̃_t  = W_h x_t + b_h                           candidate (linear, no tanh)
        h_t  = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t
        y_t  = h_t

    This is the paper's minLSTM with its normalised (time-independent scale) gates, in
    the plain form without the log-space g(·) variant. f'_t + i'_t = 1 and
    f'_t = σ(log f_t - log i_t) ∈ (0, 1), so h_t = a_t ⊙ h_{t-1} + b_t with a_t = f'_t and
    b_t = i'_t ⊙ h̃_t: a linear recurrence that the ops solve with a parallel scan.
    Lengths, padding steps and reverse: as every forward (:mod:`rnnlab.reference`).

    Shapes:
        x        (T, B, I)      w_ih  (3H, I)     b_ih  (3H,) or None (no bias)
        h0       (B, H)         lengths  (B,) or None

    Returns (y (T, B, H), h_n (B, H), cache); cache.gates holds "f", "i" and "h_tilde".
    """
    x, valid, h0, w_ih, _, b_ih, _ = cell_arguments(x, h0, w_ih, None, b_ih, None, lengths, 3)
    T, B, _ = x.shape
    w_f, w_i, w_h = np.split(w_ih, 3)
    b_f, b_i, b_h = (0.0, 0.0, 0.0) if b_ih is None else np.split(b_ih, 3)

    def step(t, h):
        f = sigmoid(x[t] @ w_f.T + b_f)
        i = sigmoid(x[t] @ w_i.T + b_i)
        h_tilde = x[t] @ w_h.T + b_h
        h_t = (f * h + i * h_tilde) / (f + i)             # f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t
        return (h_t,), {"f": f, "i": i, "h_tilde": h_tilde}

    gates = step_record(T, B, dict.fromkeys(("f", "i", "h_tilde"), h0.shape[1]))
    y, (h,), (h_prev,) = walk(step, (h0,), valid, reverse, gates)
    cache = MinLSTMCache(x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates,
                         w_ih=w_ih, b_ih=b_ih)
    return y, h, cache


def minlstm_backward(dy, dh_n, cache: MinLSTMCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for minlstm_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward), with
    s_t = f_t + i_t:

        dh_t   = dy_t + f'_{t+1} ⊙ dh_{t+1}            (dh_n at the last step)
        df'_t  = dh_t ⊙ h_{t-1}            di'_t = dh_t ⊙ h̃_t
        f'_t = f_t / s_t, i'_t = i_t / s_t, so ∂f'/∂f = i/s², ∂f'/∂i = -f/s² (and i' alike):
        df_t   = (df'_t - di'_t) ⊙ i_t / s_t²      di_t = (di'_t - df'_t) ⊙ f_t / s_t²
        daf_t  = df_t ⊙ f_t(1 - f_t)       dai_t = di_t ⊙ i_t(1 - i_t)       through σ
        dah_t  = dh_t ⊙ i'_t                                                 h̃ is linear
        dx_t   = W_fᵀ daf_t + W_iᵀ dai_t + W_hᵀ dah_t
        dW_·   = Σ_t da·_t x_tᵀ             db_· = Σ_t da·_t            (· = f, i, h)
        dh_0   = f' ⊙ dh at the first processed step

    Returns the gradients "x", "h0", "w_ih", "b_ih" and "h".
    """
    check_cache(cache, MinLSTMCache, "minlstm_forward")
    x = cache.x
    dy, d_final = loss_grads(cache, dy, dh_n)
    dx, dw_ih, db_ih = np.zeros_like(x), np.zeros_like(cache.w_ih), np.zeros(cache.w_ih.shape[0])

    def step(t, dh):
        f, i, h_tilde = (cache.gates[name][t] for name in ("f", "i", "h_tilde"))
        s = np.where(cache.valid[t], f + i, 1.0)          # padding rows: any nonzero value
        d_fn = dh * cache.h_prev[t]                       # ∂L/∂f'_t
        d_in = dh * h_tilde                               # ∂L/∂i'_t
        daf = (d_fn - d_in) * i / s**2 * f * (1.0 - f)
        dai = (d_in - d_fn) * f / s**2 * i * (1.0 - i)
        dah = dh * i / s
        da = np.concatenate([daf, dai, dah], axis=1)
        dx[t] = input_backward(da, x[t], cache.w_ih, dw_ih, db_ih)
        return (dh * f / s,)

    dh, (dh0,) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "w_ih": dw_ih, "b_ih": None if cache.b_ih is None else db_ih,
            "h": dh}

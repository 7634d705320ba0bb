"""minLSTM (Feng et al. 2024) in float64 NumPy: forward over a sequence and BPTT."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    as_float64,
    grad_or_zeros,
    hidden_size,
    optional_float64,
    sigmoid,
    step_mask,
    time_steps,
)


@dataclass(frozen=True, eq=False)
class MinLSTMCache:
    """What minlstm_backward needs from minlstm_forward.

    x       (T, B, I)  the inputs, 0 at padding steps
    h_prev  (T, B, H)  h_{t-1}, the state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    gates   {"f", "i", "h_tilde"}: each (T, B, H), 0 at padding steps
    """

    x: np.ndarray
    h_prev: np.ndarray
    valid: np.ndarray
    w_ih: np.ndarray
    b_ih: np.ndarray | None
    reverse: bool
    gates: dict[str, np.ndarray]


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
    H = hidden_size(w_ih, 3, "(3H, I)")
    x = as_float64("x", x, "(T, B, I)", (None, None, None))
    T, B, I = x.shape
    h0 = as_float64("h0", h0, "(B, H)", (B, H))
    w_ih = as_float64("w_ih", w_ih, "(3H, I)", (3 * H, I))
    b_ih = optional_float64("b_ih", b_ih, "(3H,)", (3 * H,))
    valid = step_mask(lengths, T, B)
    x = np.where(valid, x, 0.0)
    w_f, w_i, w_h = np.split(w_ih, 3)
    b_f, b_i, b_h = (0.0, 0.0, 0.0) if b_ih is None else np.split(b_ih, 3)

    y = np.zeros((T, B, H))
    h_prev = np.zeros((T, B, H))
    gates = {name: np.zeros((T, B, H)) for name in ("f", "i", "h_tilde")}
    h = h0
    for t in time_steps(T, reverse):
        keep = valid[t]                                   # (B, 1)
        h_prev[t] = h
        f = sigmoid(x[t] @ w_f.T + b_f)
        i = sigmoid(x[t] @ w_i.T + b_i)
        h_tilde = x[t] @ w_h.T + b_h
        h_t = (f * h + i * h_tilde) / (f + i)             # f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t
        h = np.where(keep, h_t, h)                        # padding steps keep the state
        y[t] = np.where(keep, h, 0.0)
        for name, value in (("f", f), ("i", i), ("h_tilde", h_tilde)):
            gates[name][t] = np.where(keep, value, 0.0)

    return y, h, MinLSTMCache(x, h_prev, valid, w_ih, b_ih, reverse, gates)


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
    if not isinstance(cache, MinLSTMCache):
        raise TypeError(
            f"cache must be the MinLSTMCache from minlstm_forward; got {type(cache).__name__}"
        )
    x = cache.x
    T, B, _ = x.shape
    H = cache.w_ih.shape[0] // 3
    dy = grad_or_zeros("dy", dy, "(T, B, H)", (T, B, H))
    dh_next = grad_or_zeros("dh_n", dh_n, "(B, H)", (B, H))  # ∂L/∂(state after step t)
    w_f, w_i, w_h = np.split(cache.w_ih, 3)

    dx = np.zeros_like(x)
    dw_ih = np.zeros_like(cache.w_ih)
    db_ih = np.zeros(3 * H)
    dw_f, dw_i, dw_h = np.split(dw_ih, 3)                 # views: adding fills dw_ih
    db_f, db_i, db_h = np.split(db_ih, 3)
    dh_record = np.zeros((T, B, H))
    for t in reversed(time_steps(T, cache.reverse)):
        keep = cache.valid[t]
        f, i, h_tilde = (cache.gates[name][t] for name in ("f", "i", "h_tilde"))
        h_prev, x_t = cache.h_prev[t], x[t]
        s = np.where(keep, f + i, 1.0)                    # padding rows: any nonzero value
        dh = np.where(keep, dy[t] + dh_next, 0.0)        # h_t feeds y_t and the next step
        d_fn = dh * h_prev                                # ∂L/∂f'_t
        d_in = dh * h_tilde                               # ∂L/∂i'_t
        daf = (d_fn - d_in) * i / s**2 * f * (1.0 - f)
        dai = (d_in - d_fn) * f / s**2 * i * (1.0 - i)
        dah = dh * i / s
        dx[t] = daf @ w_f + dai @ w_i + dah @ w_h
        dw_f += daf.T @ x_t
        dw_i += dai.T @ x_t
        dw_h += dah.T @ x_t
        db_f += daf.sum(axis=0)
        db_i += dai.sum(axis=0)
        db_h += dah.sum(axis=0)
        dh_next = dh * f / s + np.where(keep, 0.0, dh_next)
        dh_record[t] = dh

    return {
        "x": dx,
        "h0": dh_next,
        "w_ih": dw_ih,
        "b_ih": None if cache.b_ih is None else db_ih,
        "h": dh_record,
    }

"""LSTM (optionally with a projection) in float64 NumPy: forward and backpropagation
through time."""

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
class LSTMCache:
    """What lstm_backward needs from lstm_forward.

    x       (T, B, I)  the inputs, 0 at padding steps (padding never reaches the math)
    h_prev  (T, B, P)  h_{t-1}, the output state entering step t
    c_prev  (T, B, H)  c_{t-1}, the cell state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    gates   {"i", "f", "g", "o": the gates after σ / tanh, "c": the cell state c_t},
            each (T, B, H) and 0 at padding steps
    """

    x: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray
    valid: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    w_hr: np.ndarray | None
    reverse: bool
    gates: dict[str, np.ndarray]


def lstm_forward(
    x,
    h0,
    c0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    w_hr=None,
    *,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], LSTMCache]:
    """Run one direction of a single-layer LSTM over a sequence.

    At every valid step t of sample b, with the gate blocks of W and b in the order i, f, g, o:

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate cell
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        m_t = o_t ⊙ tanh(c_t)
        h_t = W_hr m_t        (with the projection w_hr, Sak et al. 2014; else h_t = m_t)
        y_t = h_t

    Lengths, padding steps and reverse: as every forward (:mod:`rnnlab.reference`).

    Shapes:
        x   (T, B, I)    w_ih  (4H, I)    b_ih  (4H,) or None (no bias)
        h0  (B, P)       w_hh  (4H, P)    b_hh  (4H,) or None
        c0  (B, H)       w_hr  (P, H) or None (no projection: P = H)
        lengths  (B,) or None

    Returns (y, (h_n, c_n), cache):
        y     (T, B, P)  outputs, 0 at padding steps
        h_n   (B, P)     c_n (B, H): the states after each sample's last step
        cache LSTMCache  for lstm_backward; cache.gates holds "i", "f", "g", "o", "c"
    """
    H = hidden_size(w_hh, 4, "(4H, P)")
    x = as_float64("x", x, "(T, B, I)", (None, None, None))
    T, B, I = x.shape
    w_hr = optional_float64("w_hr", w_hr, "(P, H)", (None, H))
    P, P_name = (H, "H") if w_hr is None else (w_hr.shape[0], "P")
    h0 = as_float64("h0", h0, f"(B, {P_name})", (B, P))
    c0 = as_float64("c0", c0, "(B, H)", (B, H))
    w_ih = as_float64("w_ih", w_ih, "(4H, I)", (4 * H, I))
    w_hh = as_float64("w_hh", w_hh, f"(4H, {P_name})", (4 * H, P))
    b_ih = optional_float64("b_ih", b_ih, "(4H,)", (4 * H,))
    b_hh = optional_float64("b_hh", b_hh, "(4H,)", (4 * H,))
    valid = step_mask(lengths, T, B)
    x = np.where(valid, x, 0.0)
    bias = (0.0 if b_ih is None else b_ih) + (0.0 if b_hh is None else b_hh)

    y = np.zeros((T, B, P))
    h_prev, c_prev = np.zeros((T, B, P)), np.zeros((T, B, H))
    gates = {name: np.zeros((T, B, H)) for name in ("i", "f", "g", "o", "c")}
    h, c = h0, c0
    for t in time_steps(T, reverse):
        keep = valid[t]                                   # (B, 1)
        h_prev[t], c_prev[t] = h, c
        a = x[t] @ w_ih.T + h @ w_hh.T + bias             # (B, 4H) all four gates at once
        i = sigmoid(a[:, 0 * H:1 * H])
        f = sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:4 * H])
        c_t = f * c + i * g                               # (B, H)
        m_t = o * np.tanh(c_t)                            # (B, H)
        h_t = m_t if w_hr is None else m_t @ w_hr.T       # (B, P)
        h = np.where(keep, h_t, h)                        # padding steps keep the state
        c = np.where(keep, c_t, c)
        y[t] = np.where(keep, h, 0.0)
        for name, value in (("i", i), ("f", f), ("g", g), ("o", o), ("c", c_t)):
            gates[name][t] = np.where(keep, value, 0.0)

    cache = LSTMCache(x, h_prev, c_prev, valid, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, gates)
    return y, (h, c), cache


def lstm_backward(dy, dh_n, dc_n, cache: LSTMCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for lstm_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward), dc_t = ∂L/∂c_t
    in total:

        dh_t  = dy_t + W_hhᵀ da_{t+1}                  (dh_n at the last step)
        dm_t  = W_hrᵀ dh_t                             (dh_t without the projection)
        dc_t  = f_{t+1} ⊙ dc_{t+1} + dm_t ⊙ o_t ⊙ (1 - tanh²(c_t))   (dc_n at the last step)
        do_t  = dm_t ⊙ tanh(c_t)     di_t = dc_t ⊙ g_t     dg_t = dc_t ⊙ i_t
        df_t  = dc_t ⊙ c_{t-1}
        da_t  = [di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)]   (B, 4H)
        dx_t  = W_ihᵀ da_t
        dW_ih = Σ_t da_t x_tᵀ    dW_hh = Σ_t da_t h_{t-1}ᵀ    db_ih = db_hh = Σ_t da_t
        dW_hr = Σ_t dh_t m_tᵀ
        dh0   = W_hhᵀ da, dc0 = f ⊙ dc at the first processed step

    Shapes: dy (T, B, P), dh_n (B, P), dc_n (B, H); each may be None.
    Returns the gradients "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr" and "h".
    """
    if not isinstance(cache, LSTMCache):
        raise TypeError(
            f"cache must be the LSTMCache from lstm_forward; got {type(cache).__name__}"
        )
    x, w_ih, w_hh, w_hr = cache.x, cache.w_ih, cache.w_hh, cache.w_hr
    T, B, _ = x.shape
    H, P = w_hh.shape[0] // 4, w_hh.shape[1]
    dy = grad_or_zeros("dy", dy, "(T, B, P)", (T, B, P))
    dh_next = grad_or_zeros("dh_n", dh_n, "(B, P)", (B, P))  # ∂L/∂(state after step t) from later
    dc_next = grad_or_zeros("dc_n", dc_n, "(B, H)", (B, H))

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    db = np.zeros(4 * H)
    dh_record = np.zeros((T, B, P))
    for t in reversed(time_steps(T, cache.reverse)):
        keep = cache.valid[t]
        i, f, g, o, c = (cache.gates[name][t] for name in ("i", "f", "g", "o", "c"))
        tanh_c = np.tanh(c)
        dh = np.where(keep, dy[t] + dh_next, 0.0)     # h_t feeds y_t and the next step
        if w_hr is None:
            dm = dh                                   # h_t = m_t
        else:
            dw_hr += dh.T @ (o * tanh_c)              # h_t = W_hr m_t
            dm = dh @ w_hr
        dc = np.where(keep, dc_next, 0.0) + dm * o * (1.0 - tanh_c**2)  # c_t feeds c_{t+1}, m_t
        do = dm * tanh_c                              # m_t = o_t ⊙ tanh(c_t)
        di = dc * g                                   # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        dg = dc * i
        df = dc * cache.c_prev[t]
        da = np.concatenate(                          # through σ and tanh: (B, 4H)
            [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)],
            axis=1,
        )
        dx[t] = da @ w_ih                             # a_t = W_ih x_t + ...
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ cache.h_prev[t]               # ... + W_hh h_{t-1}
        db += da.sum(axis=0)                          # ... + b_ih + b_hh
        dh_next = da @ w_hh + np.where(keep, 0.0, dh_next)  # padding passes both through
        dc_next = dc * f + np.where(keep, 0.0, dc_next)
        dh_record[t] = dh

    return {
        "x": dx,
        "h0": dh_next,
        "c0": dc_next,
        "w_ih": dw_ih,
        "w_hh": dw_hh,
        "b_ih": None if cache.b_ih is None else db,
        "b_hh": None if cache.b_hh is None else db.copy(),
        "w_hr": dw_hr,
        "h": dh_record,
    }

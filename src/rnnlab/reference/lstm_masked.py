"""LSTM with recurrent dropout and zoneout in float64 NumPy: forward and backpropagation
through time, the masks given.

Shape legend:  T time steps · B batch · I input size · H hidden (cell) size
               P output size: the projection size with w_hr, else H
"""

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
class LSTMMaskedCache:
    """What lstm_masked_backward needs from lstm_masked_forward.

    x       (T, B, I)  the inputs, 0 at padding steps
    h_prev  (T, B, P)  h_{t-1}, the output state entering step t
    c_prev  (T, B, H)  c_{t-1}, the cell state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    drop_h  (B, P)     the recurrent dropout multiplier d (ones without)
    keep_h  (T, B, P), keep_c (T, B, H): the zoneout shares k^h, k^c (zeros without)
    gates   {"i", "f", "g", "o", "c_tilde": c̃_t, "c": c_t}, each (T, B, H), 0 at padding
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
    drop_h: np.ndarray
    keep_h: np.ndarray
    keep_c: np.ndarray
    reverse: bool
    gates: dict[str, np.ndarray]


def lstm_masked_forward(
    x,
    h0,
    c0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    w_hr=None,
    *,
    drop_h=None,
    keep_h=None,
    keep_c=None,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], LSTMMaskedCache]:
    """Run one direction of a single-layer LSTM with recurrent dropout and zoneout.

    At every valid step t of sample b, with the gate blocks of W and b in the order
    i, f, g, o, the recurrent dropout multiplier d (B, P) and the zoneout shares
    k^h_t (B, P), k^c_t (B, H):

        a_t  = W_ih x_t + b_ih + W_hh (d ⊙ h_{t-1}) + b_hh      recurrent dropout
        i_t, f_t, o_t = σ(a_t blocks i, f, o)     g_t = tanh(a_t block g)
        c̃_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        h̃_t = W_hr (o_t ⊙ tanh(c̃_t))             (without w_hr: o_t ⊙ tanh(c̃_t))
        c_t  = k^c_t ⊙ c_{t-1} + (1 - k^c_t) ⊙ c̃_t                zoneout
        h_t  = k^h_t ⊙ h_{t-1} + (1 - k^h_t) ⊙ h̃_t
        y_t  = h_t

    Recurrent dropout (Gal & Ghahramani 2016): in training d = M / (1 - p), M ~
    Bernoulli(1 - p), one mask per sequence, the same at every step; in eval d = 1.
    Zoneout (Krueger et al. 2017): in training k_t ~ Bernoulli(p), a fresh mask per step
    (each unit keeps its previous value with probability p); in eval k_t = p, the
    expectation p·h_{t-1} + (1 - p)·h̃_t. With d = 1 and k = 0 this is
    :func:`rnnlab.reference.lstm_forward`. Padding, lengths and reverse are as there.

    Shapes: as lstm_forward; drop_h (B, P) or None (d = 1); keep_h (T, B, P) and
    keep_c (T, B, H) or None (k = 0).

    Returns (y, (h_n, c_n), cache): y (T, B, P), 0 at padding; h_n (B, P), c_n (B, H).
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
    d = np.ones((B, P)) if drop_h is None else as_float64("drop_h", drop_h, "(B, P)", (B, P))
    k_h = np.zeros((T, B, P)) if keep_h is None else as_float64(
        "keep_h", keep_h, "(T, B, P)", (T, B, P))
    k_c = np.zeros((T, B, H)) if keep_c is None else as_float64(
        "keep_c", keep_c, "(T, B, H)", (T, B, H))
    valid = step_mask(lengths, T, B)
    x = np.where(valid, x, 0.0)
    bias = (0.0 if b_ih is None else b_ih) + (0.0 if b_hh is None else b_hh)

    y = np.zeros((T, B, P))
    h_prev, c_prev = np.zeros((T, B, P)), np.zeros((T, B, H))
    gates = {name: np.zeros((T, B, H)) for name in ("i", "f", "g", "o", "c_tilde", "c")}
    h, c = h0, c0
    for t in time_steps(T, reverse):
        keep = valid[t]                                   # (B, 1)
        h_prev[t], c_prev[t] = h, c
        a = x[t] @ w_ih.T + (d * h) @ w_hh.T + bias       # (B, 4H)
        i = sigmoid(a[:, 0 * H:1 * H])
        f = sigmoid(a[:, 1 * H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:4 * H])
        c_tilde = f * c + i * g                           # (B, H)
        m_t = o * np.tanh(c_tilde)
        h_tilde = m_t if w_hr is None else m_t @ w_hr.T   # (B, P)
        c_t = k_c[t] * c + (1.0 - k_c[t]) * c_tilde       # zoneout
        h_t = k_h[t] * h + (1.0 - k_h[t]) * h_tilde
        h = np.where(keep, h_t, h)                        # padding steps keep the state
        c = np.where(keep, c_t, c)
        y[t] = np.where(keep, h, 0.0)
        for name, value in (("i", i), ("f", f), ("g", g), ("o", o), ("c_tilde", c_tilde),
                            ("c", c_t)):
            gates[name][t] = np.where(keep, value, 0.0)

    cache = LSTMMaskedCache(x, h_prev, c_prev, valid, w_ih, w_hh, b_ih, b_hh, w_hr, d, k_h,
                            k_c, reverse, gates)
    return y, (h, c), cache


def lstm_masked_backward(dy, dh_n, dc_n, cache: LSTMMaskedCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for lstm_masked_forward (the masks are constants).

    The loss is L = Σ dy ⊙ y + Σ dh_n ⊙ h_n + Σ dc_n ⊙ c_n. Walking the steps in the
    opposite order to the forward pass, with dh_t = ∂L/∂h_t and dc_t = ∂L/∂c_t in total:

        dh_t  = dy_t + (what h_t gave step t+1)        (dh_n at the last step)
        dh̃_t = (1 - k^h_t) ⊙ dh_t                     dm_t = W_hrᵀ dh̃_t (dh̃_t without w_hr)
        dc̃_t = (1 - k^c_t) ⊙ dc_t + dm_t ⊙ o_t ⊙ (1 - tanh²(c̃_t))
        do_t = dm_t ⊙ tanh(c̃_t)   di_t = dc̃_t ⊙ g_t   dg_t = dc̃_t ⊙ i_t   df_t = dc̃_t ⊙ c_{t-1}
        da_t  = [di ⊙ i(1-i), df ⊙ f(1-f), dg ⊙ (1-g²), do ⊙ o(1-o)]        (B, 4H)
        dx_t  = W_ihᵀ da_t
        dW_ih = Σ_t da_t x_tᵀ   dW_hh = Σ_t da_t (d ⊙ h_{t-1})ᵀ   db_ih = db_hh = Σ_t da_t
        dW_hr = Σ_t dh̃_t (o_t ⊙ tanh(c̃_t))ᵀ
        dh_{t-1} gets k^h_t ⊙ dh_t + d ⊙ (W_hhᵀ da_t)
        dc_{t-1} gets k^c_t ⊙ dc_t + f_t ⊙ dc̃_t

    A padding step hands both state gradients through unchanged and takes none itself.
    Returns "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr" (None when absent) and
    "h": (T, B, P) the total ∂L/∂h_t, 0 at padding steps.
    """
    if not isinstance(cache, LSTMMaskedCache):
        raise TypeError(
            "cache must be the LSTMMaskedCache from lstm_masked_forward; got "
            f"{type(cache).__name__}"
        )
    x, w_ih, w_hh, w_hr = cache.x, cache.w_ih, cache.w_hh, cache.w_hr
    d, k_h, k_c = cache.drop_h, cache.keep_h, cache.keep_c
    T, B, _ = x.shape
    H, P = w_hh.shape[0] // 4, w_hh.shape[1]
    dy = grad_or_zeros("dy", dy, "(T, B, P)", (T, B, P))
    dh_next = grad_or_zeros("dh_n", dh_n, "(B, P)", (B, P))
    dc_next = grad_or_zeros("dc_n", dc_n, "(B, H)", (B, H))

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    db = np.zeros(4 * H)
    dh_record = np.zeros((T, B, P))
    for t in reversed(time_steps(T, cache.reverse)):
        keep = cache.valid[t]
        i, f, g, o, c_tilde = (cache.gates[n][t] for n in ("i", "f", "g", "o", "c_tilde"))
        tanh_c = np.tanh(c_tilde)
        dh = np.where(keep, dy[t] + dh_next, 0.0)     # h_t feeds y_t and the next step
        dc = np.where(keep, dc_next, 0.0)             # c_t feeds the next step
        dh_tilde = (1.0 - k_h[t]) * dh                # h_t = k^h h_{t-1} + (1 - k^h) h̃_t
        if w_hr is None:
            dm = dh_tilde
        else:
            dw_hr += dh_tilde.T @ (o * tanh_c)        # h̃_t = W_hr m_t
            dm = dh_tilde @ w_hr
        dc_tilde = (1.0 - k_c[t]) * dc + dm * o * (1.0 - tanh_c**2)
        do = dm * tanh_c
        di = dc_tilde * g                             # c̃_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        dg = dc_tilde * i
        df = dc_tilde * cache.c_prev[t]
        da = np.concatenate(
            [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)],
            axis=1,
        )
        dx[t] = da @ w_ih
        dw_ih += da.T @ x[t]
        dw_hh += da.T @ (d * cache.h_prev[t])         # a_t = ... + W_hh (d ⊙ h_{t-1})
        db += da.sum(axis=0)
        dh_next = k_h[t] * dh + d * (da @ w_hh) + np.where(keep, 0.0, dh_next)
        dc_next = k_c[t] * dc + f * dc_tilde + np.where(keep, 0.0, dc_next)
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

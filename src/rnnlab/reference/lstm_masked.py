"""LSTM with recurrent dropout and zoneout in float64 NumPy: forward and backpropagation
through time, the masks given; the plain LSTM's cell (:mod:`rnnlab.reference.lstm`) with
the masks' terms added."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    bias_grads,
    check_cache,
    float64_or,
    input_backward,
    loss_grads,
    step_record,
    summed_bias,
    walk,
    walk_back,
)
from .lstm import (
    LSTMCache,
    lstm_arguments,
    lstm_cell,
    lstm_cell_backward,
    lstm_sums,
    project,
    project_backward,
)


@dataclass(frozen=True, eq=False)
class LSTMMaskedCache(LSTMCache):
    """What lstm_masked_backward needs from lstm_masked_forward.

    The fields of :class:`~rnnlab.reference.LSTMCache`, with gates {"i", "f", "g", "o",
    "c_tilde": c̃_t, "c": c_t}, and the masks:
    drop_h  (B, P)     the recurrent dropout multiplier d (ones without)
    keep_h  (T, B, P), keep_c (T, B, H): the zoneout shares k^h, k^c (zeros without)
    """

    drop_h: np.ndarray
    keep_h: np.ndarray
    keep_c: np.ndarray


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
        i_t, f_t, g_t, o_t   from a_t, as in lstm_forward
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
    x, valid, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = lstm_arguments(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths
    )
    T, B, _ = x.shape
    H, P = c0.shape[1], h0.shape[1]
    d = float64_or("drop_h", drop_h, 1.0, "(B, P)", (B, P))
    k_h = float64_or("keep_h", keep_h, 0.0, "(T, B, P)", (T, B, P))
    k_c = float64_or("keep_c", keep_c, 0.0, "(T, B, H)", (T, B, H))
    bias = summed_bias(b_ih, b_hh)

    def step(t, h, c):
        a = x[t] @ w_ih.T + (d * h) @ w_hh.T + bias       # (B, 4H)
        i, f, g, o, c_tilde = lstm_cell(a, c)
        h_tilde = project(o * np.tanh(c_tilde), w_hr)     # (B, P)
        c_t = k_c[t] * c + (1.0 - k_c[t]) * c_tilde       # zoneout
        h_t = k_h[t] * h + (1.0 - k_h[t]) * h_tilde
        return (h_t, c_t), {"i": i, "f": f, "g": g, "o": o, "c_tilde": c_tilde, "c": c_t}

    gates = step_record(T, B, dict.fromkeys(("i", "f", "g", "o", "c_tilde", "c"), H))
    y, (h, c), (h_prev, c_prev) = walk(step, (h0, c0), valid, reverse, gates)
    cache = LSTMMaskedCache(
        x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, c_prev=c_prev,
        w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_hr=w_hr, drop_h=d, keep_h=k_h, keep_c=k_c,
    )
    return y, (h, c), cache


def lstm_masked_backward(dy, dh_n, dc_n, cache: LSTMMaskedCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for lstm_masked_forward (the masks are constants).

    As :func:`rnnlab.reference.lstm_backward` (dh_t, dc_t the totals; shapes and returns
    the same), with c̃_t in the place of c_t inside the cell; the lines that differ:

        dh̃_t = (1 - k^h_t) ⊙ dh_t                     dm_t = W_hrᵀ dh̃_t (dh̃_t without w_hr)
        dc̃_t = (1 - k^c_t) ⊙ dc_t + dm_t ⊙ o_t ⊙ (1 - tanh²(c̃_t))
        do_t = dm_t ⊙ tanh(c̃_t);   di_t … dx_t as there, from dc̃_t
        dW_hh = Σ_t da_t (d ⊙ h_{t-1})ᵀ    dW_hr = Σ_t dh̃_t (o_t ⊙ tanh(c̃_t))ᵀ
        dh_{t-1} gets k^h_t ⊙ dh_t + d ⊙ (W_hhᵀ da_t)
        dc_{t-1} gets k^c_t ⊙ dc_t + f_t ⊙ dc̃_t
    """
    check_cache(cache, LSTMMaskedCache, "lstm_masked_forward")
    dy, d_final = loss_grads(cache, dy, dh_n, dc_n, P="P")
    x, w_ih, w_hh, w_hr = cache.x, cache.w_ih, cache.w_hh, cache.w_hr
    d, k_h, k_c = cache.drop_h, cache.keep_h, cache.keep_c
    dx, dw_ih, dw_hh, dw_hr, db = lstm_sums(cache)

    def step(t, dh, dc):
        nonlocal dw_hh                                # the sums over steps
        i, f, g, o, c_tilde = (cache.gates[n][t] for n in ("i", "f", "g", "o", "c_tilde"))
        tanh_c = np.tanh(c_tilde)
        dh_tilde = (1.0 - k_h[t]) * dh                # h_t = k^h h_{t-1} + (1 - k^h) h̃_t
        dm = project_backward(dh_tilde, o * tanh_c, w_hr, dw_hr)  # h̃_t = W_hr m_t
        dc_tilde = (1.0 - k_c[t]) * dc + dm * o * (1.0 - tanh_c**2)
        da = lstm_cell_backward(dc_tilde, dm * tanh_c, i, f, g, o, cache.c_prev[t])
        dx[t] = input_backward(da, x[t], w_ih, dw_ih, db)
        dw_hh += da.T @ (d * cache.h_prev[t])         # a_t = ... + W_hh (d ⊙ h_{t-1})
        return k_h[t] * dh + d * (da @ w_hh), k_c[t] * dc + f * dc_tilde

    dh, (dh0, dc0) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "c0": dc0, "w_ih": dw_ih, "w_hh": dw_hh,
            **bias_grads(cache, db), "w_hr": dw_hr, "h": dh}

"""LSTM (optionally with a projection) in float64 NumPy: forward and backpropagation
through time. The cell's pieces (`lstm_arguments`, `lstm_cell`, `lstm_cell_backward`,
`project`, `project_backward`) also serve the masked and layer-normalised LSTMs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    SequenceCache,
    as_float64,
    bias_grads,
    check_cache,
    hidden_size,
    input_backward,
    loss_grads,
    optional_float64,
    sequence,
    sigmoid,
    step_record,
    summed_bias,
    walk,
    walk_back,
)


@dataclass(frozen=True, eq=False)
class LSTMCache(SequenceCache):
    """What lstm_backward needs from lstm_forward.

    The fields of every cache (x, h_prev (T, B, P), valid, reverse, gates), and
    c_prev  (T, B, H)  c_{t-1}, the cell state entering step t
    w_ih, w_hh, b_ih, b_hh, w_hr   the weights as checked (None: absent)
    gates   {"i", "f", "g", "o": the gates after σ / tanh, "c": the cell state c_t},
            each (T, B, H) and 0 at padding steps
    """

    c_prev: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    w_hr: np.ndarray | None


def lstm_arguments(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, rows: str = "(4H, P)"):
    """The checked float64 arguments of an LSTM forward, shaped as lstm_forward's:
    (x with its padding steps zeroed, valid, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr).
    `rows` names w_hh's shape in the error of a wrong one."""
    H = hidden_size("w_hh", w_hh, 4, rows)
    x, valid = sequence(x, lengths)
    B, I = x.shape[1:]
    w_hr = optional_float64("w_hr", w_hr, "(P, H)", (None, H))
    P, P_name = (H, "H") if w_hr is None else (w_hr.shape[0], "P")
    return (
        x,
        valid,
        as_float64("h0", h0, f"(B, {P_name})", (B, P)),
        as_float64("c0", c0, "(B, H)", (B, H)),
        as_float64("w_ih", w_ih, "(4H, I)", (4 * H, I)),
        as_float64("w_hh", w_hh, f"(4H, {P_name})", (4 * H, P)),
        optional_float64("b_ih", b_ih, "(4H,)", (4 * H,)),
        optional_float64("b_hh", b_hh, "(4H,)", (4 * H,)),
        w_hr,
    )


def lstm_cell(a: np.ndarray, c_prev: np.ndarray) -> tuple[np.ndarray, ...]:
    """The gates and cell state of one step from its pre-activation a (B, 4H), blocks
    i, f, g, o: lstm_forward's equations from i_t to c_t. Returns (i, f, g, o, c_t)."""
    H = a.shape[1] // 4
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:4 * H])
    return i, f, g, o, f * c_prev + i * g


def lstm_cell_backward(dc, do, i, f, g, o, c_prev) -> np.ndarray:
    """da_t (B, 4H) from dc_t (∂L/∂c_t in total) and do_t: lstm_backward's lines from
    di_t to da_t, through c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t and the gates' σ / tanh."""
    di = dc * g
    dg = dc * i
    df = dc * c_prev
    return np.concatenate(
        [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)], axis=1
    )


def project(m: np.ndarray, w_hr: np.ndarray | None) -> np.ndarray:
    """h_t = W_hr m_t with the projection, else m_t."""
    return m if w_hr is None else m @ w_hr.T


def project_backward(dh, m, w_hr, dw_hr) -> np.ndarray:
    """dm_t = W_hrᵀ dh_t (dh_t without the projection); adds dh_t m_tᵀ into dw_hr."""
    if w_hr is None:
        return dh
    dw_hr += dh.T @ m
    return dh @ w_hr


def lstm_sums(cache) -> tuple:
    """Zero sums of an LSTM backward: (dx, dW_ih, dW_hh, dW_hr or None, db), shaped as the
    cache's x, weights and biases (4H,)."""
    return (np.zeros_like(cache.x), np.zeros_like(cache.w_ih), np.zeros_like(cache.w_hh),
            None if cache.w_hr is None else np.zeros_like(cache.w_hr),
            np.zeros(cache.w_hh.shape[0]))


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
    x, valid, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = lstm_arguments(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths
    )
    T, B, _ = x.shape
    bias = summed_bias(b_ih, b_hh)

    def step(t, h, c):
        a = x[t] @ w_ih.T + h @ w_hh.T + bias             # (B, 4H) all four gates at once
        i, f, g, o, c_t = lstm_cell(a, c)
        m_t = o * np.tanh(c_t)                            # (B, H)
        return (project(m_t, w_hr), c_t), {"i": i, "f": f, "g": g, "o": o, "c": c_t}

    gates = step_record(T, B, dict.fromkeys("ifgoc", c0.shape[1]))
    y, (h, c), (h_prev, c_prev) = walk(step, (h0, c0), valid, reverse, gates)
    cache = LSTMCache(x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates,
                      c_prev=c_prev, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, w_hr=w_hr)
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
    check_cache(cache, LSTMCache, "lstm_forward")
    dy, d_final = loss_grads(cache, dy, dh_n, dc_n, P="P")
    x, w_ih, w_hh, w_hr = cache.x, cache.w_ih, cache.w_hh, cache.w_hr
    dx, dw_ih, dw_hh, dw_hr, db = lstm_sums(cache)

    def step(t, dh, dc):
        nonlocal dw_hh                                # the sums over steps
        i, f, g, o, c = (cache.gates[name][t] for name in ("i", "f", "g", "o", "c"))
        tanh_c = np.tanh(c)
        dm = project_backward(dh, o * tanh_c, w_hr, dw_hr)  # h_t = W_hr m_t
        dc = dc + dm * o * (1.0 - tanh_c**2)          # c_t feeds c_{t+1} and m_t
        da = lstm_cell_backward(dc, dm * tanh_c, i, f, g, o, cache.c_prev[t])
        dx[t] = input_backward(da, x[t], w_ih, dw_ih, db)  # a_t = W_ih x_t + b_ih + b_hh
        dw_hh += da.T @ cache.h_prev[t]               #       + W_hh h_{t-1}
        return da @ w_hh, dc * f

    dh, (dh0, dc0) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "c0": dc0, "w_ih": dw_ih, "w_hh": dw_hh,
            **bias_grads(cache, db), "w_hr": dw_hr, "h": dh}

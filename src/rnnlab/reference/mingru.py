"""minGRU (Feng et al. 2024) in float64 NumPy: forward over a sequence and BPTT."""

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
class MinGRUCache:
    """What mingru_backward needs from mingru_forward.

    x       (T, B, I)  the inputs, 0 at padding steps
    h_prev  (T, B, H)  h_{t-1}, the state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    gates   {"z", "h_tilde"}: each (T, B, H), 0 at padding steps
    """

    x: np.ndarray
    h_prev: np.ndarray
    valid: np.ndarray
    w_ih: np.ndarray
    b_ih: np.ndarray | None
    reverse: bool
    gates: dict[str, np.ndarray]


def mingru_forward(
    x, h0, w_ih, b_ih=None, *, lengths=None, reverse: bool = False
) -> tuple[np.ndarray, np.ndarray, MinGRUCache]:
    """Run one direction of a single-layer minGRU over a sequence.

    At every valid step t of sample b, with the blocks of W and b in the order z, h̃:

        z_t  = σ(W_z x_t + b_z)                        update gate (x_t only)
        h̃_t  = W_h x_t + b_h                           candidate (linear, no tanh)
        h_t  = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
        y_t  = h_t

    This is the paper's minGRU in its plain ("sequential mode") form, without the
    log-space g(·) variant. The gates never read h_{t-1}, so h_t = a_t ⊙ h_{t-1} + b_t
    with a_t = 1 - z_t ∈ (0, 1) and b_t = z_t ⊙ h̃_t: a linear recurrence that the ops
    solve with a parallel scan. Lengths, padding steps and reverse: as every forward
    (:mod:`rnnlab.reference`).

    Shapes:
        x        (T, B, I)      w_ih  (2H, I)     b_ih  (2H,) or None (no bias)
        h0       (B, H)         lengths  (B,) or None

    Returns (y (T, B, H), h_n (B, H), cache); cache.gates holds "z" and "h_tilde".
    """
    H = hidden_size(w_ih, 2, "(2H, I)")
    x = as_float64("x", x, "(T, B, I)", (None, None, None))
    T, B, I = x.shape
    h0 = as_float64("h0", h0, "(B, H)", (B, H))
    w_ih = as_float64("w_ih", w_ih, "(2H, I)", (2 * H, I))
    b_ih = optional_float64("b_ih", b_ih, "(2H,)", (2 * H,))
    valid = step_mask(lengths, T, B)
    x = np.where(valid, x, 0.0)
    w_z, w_h = np.split(w_ih, 2)
    b_z, b_h = (0.0, 0.0) if b_ih is None else np.split(b_ih, 2)

    y = np.zeros((T, B, H))
    h_prev = np.zeros((T, B, H))
    gates = {name: np.zeros((T, B, H)) for name in ("z", "h_tilde")}
    h = h0
    for t in time_steps(T, reverse):
        keep = valid[t]                                   # (B, 1)
        h_prev[t] = h
        z = sigmoid(x[t] @ w_z.T + b_z)
        h_tilde = x[t] @ w_h.T + b_h
        h_t = (1.0 - z) * h + z * h_tilde
        h = np.where(keep, h_t, h)                        # padding steps keep the state
        y[t] = np.where(keep, h, 0.0)
        gates["z"][t] = np.where(keep, z, 0.0)
        gates["h_tilde"][t] = np.where(keep, h_tilde, 0.0)

    return y, h, MinGRUCache(x, h_prev, valid, w_ih, b_ih, reverse, gates)


def mingru_backward(dy, dh_n, cache: MinGRUCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for mingru_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward):

        dh_t   = dy_t + (1 - z_{t+1}) ⊙ dh_{t+1}        (dh_n at the last step)
        dz_t   = dh_t ⊙ (h̃_t - h_{t-1})      daz_t = dz_t ⊙ z_t(1 - z_t)
        dh̃_t   = dh_t ⊙ z_t                  (h̃ is linear: dah_t = dh̃_t)
        dx_t   = W_zᵀ daz_t + W_hᵀ dah_t
        dW_·   = Σ_t da·_t x_tᵀ             db_· = Σ_t da·_t              (· = z, h)
        dh_0   = (1 - z) ⊙ dh at the first processed step

    Returns the gradients "x", "h0", "w_ih", "b_ih" and "h".
    """
    if not isinstance(cache, MinGRUCache):
        raise TypeError(
            f"cache must be the MinGRUCache from mingru_forward; got {type(cache).__name__}"
        )
    x = cache.x
    T, B, _ = x.shape
    H = cache.w_ih.shape[0] // 2
    dy = grad_or_zeros("dy", dy, "(T, B, H)", (T, B, H))
    dh_next = grad_or_zeros("dh_n", dh_n, "(B, H)", (B, H))  # ∂L/∂(state after step t)
    w_z, w_h = np.split(cache.w_ih, 2)

    dx = np.zeros_like(x)
    dw_ih = np.zeros_like(cache.w_ih)
    db_ih = np.zeros(2 * H)
    dw_z, dw_h = np.split(dw_ih, 2)                       # views: adding fills dw_ih
    db_z, db_h = np.split(db_ih, 2)
    dh_record = np.zeros((T, B, H))
    for t in reversed(time_steps(T, cache.reverse)):
        keep = cache.valid[t]
        z, h_tilde = cache.gates["z"][t], cache.gates["h_tilde"][t]
        h_prev, x_t = cache.h_prev[t], x[t]
        dh = np.where(keep, dy[t] + dh_next, 0.0)        # h_t feeds y_t and the next step
        daz = dh * (h_tilde - h_prev) * z * (1.0 - z)     # h_t = h_{t-1} + z_t ⊙ (h̃_t - h_{t-1})
        dah = dh * z
        dx[t] = daz @ w_z + dah @ w_h
        dw_z += daz.T @ x_t
        dw_h += dah.T @ x_t
        db_z += daz.sum(axis=0)
        db_h += dah.sum(axis=0)
        dh_next = dh * (1.0 - z) + np.where(keep, 0.0, dh_next)
        dh_record[t] = dh

    return {
        "x": dx,
        "h0": dh_next,
        "w_ih": dw_ih,
        "b_ih": None if cache.b_ih is None else db_ih,
        "h": dh_record,
    }

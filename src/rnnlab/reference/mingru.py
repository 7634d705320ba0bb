"""minGRU (Feng et al. 2024) in float64 NumPy: forward over a sequence and BPTT."""

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
class MinGRUCache(SequenceCache):
    """What mingru_backward needs from mingru_forward.

    The fields of every cache (x, h_prev (T, B, H), valid, reverse, gates), and
    w_ih, b_ih   the weights as checked (None: no bias)
    gates   {"z", "h_tilde"}: each (T, B, H), 0 at padding steps
    """

    w_ih: np.ndarray
    b_ih: np.ndarray | None


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
    x, valid, h0, w_ih, _, b_ih, _ = cell_arguments(x, h0, w_ih, None, b_ih, None, lengths, 2)
    T, B, _ = x.shape
    w_z, w_h = np.split(w_ih, 2)
    b_z, b_h = (0.0, 0.0) if b_ih is None else np.split(b_ih, 2)

    def step(t, h):
        z = sigmoid(x[t] @ w_z.T + b_z)
        h_tilde = x[t] @ w_h.T + b_h
        return ((1.0 - z) * h + z * h_tilde,), {"z": z, "h_tilde": h_tilde}

    gates = step_record(T, B, dict.fromkeys(("z", "h_tilde"), h0.shape[1]))
    y, (h,), (h_prev,) = walk(step, (h0,), valid, reverse, gates)
    cache = MinGRUCache(x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates,
                        w_ih=w_ih, b_ih=b_ih)
    return y, h, cache


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
    check_cache(cache, MinGRUCache, "mingru_forward")
    x = cache.x
    dy, d_final = loss_grads(cache, dy, dh_n)
    dx, dw_ih, db_ih = np.zeros_like(x), np.zeros_like(cache.w_ih), np.zeros(cache.w_ih.shape[0])

    def step(t, dh):
        z, h_tilde = cache.gates["z"][t], cache.gates["h_tilde"][t]
        daz = dh * (h_tilde - cache.h_prev[t]) * z * (1.0 - z)  # h_t = h_{t-1} + z_t(h̃_t - h_{t-1})
        dah = dh * z                                      # h̃ is linear
        da = np.concatenate([daz, dah], axis=1)
        dx[t] = input_backward(da, x[t], cache.w_ih, dw_ih, db_ih)
        return (dh * (1.0 - z),)

    dh, (dh0,) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "w_ih": dw_ih, "b_ih": None if cache.b_ih is None else db_ih,
            "h": dh}

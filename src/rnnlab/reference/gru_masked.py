"""GRU with recurrent dropout and zoneout in float64 NumPy: forward and backpropagation
through time, the masks given; the plain GRU's cell (:mod:`rnnlab.reference.gru`) with the
masks' terms added."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    bias_grads,
    cell_arguments,
    check_cache,
    float64_or,
    loss_grads,
    step_record,
    walk,
    walk_back,
)
from .gru import GRUCache, gru_blocks, gru_cell, gru_cell_backward, gru_grads


@dataclass(frozen=True, eq=False)
class GRUMaskedCache(GRUCache):
    """What gru_masked_backward needs from gru_masked_forward.

    The fields of :class:`~rnnlab.reference.GRUCache`, and the masks:
    drop_h  (B, H)     the recurrent dropout multiplier d (ones without)
    keep_h  (T, B, H)  the zoneout share k_t (zeros without)
    """

    drop_h: np.ndarray
    keep_h: np.ndarray


def gru_masked_forward(
    x,
    h0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    *,
    drop_h=None,
    keep_h=None,
    reset_after: bool = True,
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, GRUMaskedCache]:
    """Run one direction of a single-layer GRU with recurrent dropout and zoneout.

    At every valid step t of sample b, with the gate blocks in the order r, z, n, the
    recurrent dropout multiplier d (B, H), u_{t-1} = d ⊙ h_{t-1}, and the zoneout share
    k_t (B, H):

        r_t, z_t, n_t   as in gru_forward, with u_{t-1} for h_{t-1} in W_h· h_{t-1}
        h̃_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
        h_t = k_t ⊙ h_{t-1} + (1 - k_t) ⊙ h̃_t                           zoneout
        y_t = h_t

    d and k as in :func:`rnnlab.reference.lstm_masked_forward` (recurrent dropout: one
    mask per sequence scaled by 1/(1 - p), d = 1 in eval; zoneout: k_t ~ Bernoulli(p)
    per step in training, k_t = p in eval). Recurrent dropout acts inside the recurrent
    products only; the carried term z_t ⊙ h_{t-1} reads the state itself. With d = 1
    and k = 0 this is :func:`rnnlab.reference.gru_forward`; padding, lengths and reverse
    are as there.

    Shapes: as gru_forward; drop_h (B, H) or None (d = 1); keep_h (T, B, H) or None (k = 0).

    Returns (y (T, B, H), h_n (B, H), cache).
    """
    x, valid, h0, w_ih, w_hh, b_ih, b_hh = cell_arguments(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 3)
    T, B, _ = x.shape
    H = h0.shape[1]
    d = float64_or("drop_h", drop_h, 1.0, "(B, H)", (B, H))
    k = float64_or("keep_h", keep_h, 0.0, "(T, B, H)", (T, B, H))

    w = gru_blocks(w_ih, w_hh, b_ih, b_hh)

    def step(t, h):
        r, z, n = gru_cell(x[t], d * h, w, reset_after)   # u = d ⊙ h_{t-1}
        h_tilde = (1.0 - z) * n + z * h
        h_t = k[t] * h + (1.0 - k[t]) * h_tilde           # zoneout
        return (h_t,), {"r": r, "z": z, "n": n}

    gates = step_record(T, B, dict.fromkeys("rzn", H))
    y, (h,), (h_prev,) = walk(step, (h0,), valid, reverse, gates)
    cache = GRUMaskedCache(
        x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, w_ih=w_ih, w_hh=w_hh,
        b_ih=b_ih, b_hh=b_hh, reset_after=reset_after, drop_h=d, keep_h=k,
    )
    return y, h, cache


def gru_masked_backward(dy, dh_n, cache: GRUMaskedCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for gru_masked_forward (the masks are constants).

    As :func:`rnnlab.reference.gru_backward` (dh_t the total ∂L/∂h_t; shapes and returns
    the same), from dh̃_t and with u_{t-1} = d ⊙ h_{t-1} in the recurrent products; the
    lines that differ:

        dh̃_t = (1 - k_t) ⊙ dh_t;   dn_t … dx_t as there, from dh̃_t, with u_{t-1} for
                h_{t-1} in dr_t, dW_h· and the products' gradient du_t (there: the
                W_h·ᵀ terms of dh_{t-1})
        dh_{t-1} gets k_t ⊙ dh_t + z_t ⊙ dh̃_t + d ⊙ du_t
    """
    check_cache(cache, GRUMaskedCache, "gru_masked_forward")
    x, d, k = cache.x, cache.drop_h, cache.keep_h
    dy, d_final = loss_grads(cache, dy, dh_n)
    dx, grads = np.zeros_like(x), gru_grads(cache)
    w, sums = gru_blocks(cache.w_ih, cache.w_hh, cache.b_ih, cache.b_hh), gru_blocks(**grads)

    def step(t, dh):
        dh_tilde = (1.0 - k[t]) * dh                  # h_t = k h_{t-1} + (1 - k) h̃_t
        dx[t], du = gru_cell_backward(t, dh_tilde, d * cache.h_prev[t], cache, w, sums)
        return (k[t] * dh + cache.gates["z"][t] * dh_tilde + d * du,)

    dh, (dh0,) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "w_ih": grads["w_ih"], "w_hh": grads["w_hh"],
            **bias_grads(cache, grads["b_ih"], grads["b_hh"]), "h": dh}

"""Elman RNN in float64 NumPy: forward over a sequence and backpropagation through time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    SequenceCache,
    bias_grads,
    cell_arguments,
    check_cache,
    input_backward,
    loss_grads,
    summed_bias,
    walk,
    walk_back,
)


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def _tanh_grad(a: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(a) ** 2


def _relu_grad(a: np.ndarray) -> np.ndarray:
    return (a > 0.0).astype(np.float64)


# nonlinearity -> (act, act')
_ACTIVATIONS = {"tanh": (np.tanh, _tanh_grad), "relu": (_relu, _relu_grad)}


@dataclass(frozen=True, eq=False)
class RNNCache(SequenceCache):
    """What rnn_backward needs from rnn_forward.

    The fields of every cache (x, h_prev (T, B, H), valid, reverse, gates), and
    w_ih, w_hh, b_ih, b_hh   the weights as checked (None: absent)
    nonlinearity             "tanh" or "relu"
    gates   {"a": (T, B, H)}  the pre-activation a_t of every step, 0 at padding steps
    """

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    nonlinearity: str


def rnn_forward(
    x,
    h0,
    w_ih,
    w_hh,
    b_ih=None,
    b_hh=None,
    *,
    nonlinearity: str = "tanh",
    lengths=None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, RNNCache]:
    """Run one direction of a single-layer Elman RNN over a sequence.

    At every valid step t of sample b:

        a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
        h_t = act(a_t)                                  act = tanh or relu
        y_t = h_t

    Lengths, padding steps and reverse: as every forward (:mod:`rnnlab.reference`).

    Shapes:
        x        (T, B, I)      w_ih  (H, I)      b_ih  (H,) or None (no bias)
        h0       (B, H)         w_hh  (H, H)      b_hh  (H,) or None
        lengths  (B,) or None

    Returns (y, h_n, cache):
        y        (T, B, H)  outputs, 0 at padding steps
        h_n      (B, H)     the state after each sample's last step
        cache    RNNCache   for rnn_backward; cache.gates["a"] is a_t, (T, B, H)
    """
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
    act, _ = _ACTIVATIONS[nonlinearity]
    x, valid, h0, w_ih, w_hh, b_ih, b_hh = cell_arguments(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, 1)
    T, B, _ = x.shape
    H = h0.shape[1]
    bias = summed_bias(b_ih, b_hh)

    def step(t, h):
        a = x[t] @ w_ih.T + h @ w_hh.T + bias             # (B, H)
        return (act(a),), {"a": a}

    gates = {"a": np.zeros((T, B, H))}
    y, (h,), (h_prev,) = walk(step, (h0,), valid, reverse, gates)
    cache = RNNCache(x=x, h_prev=h_prev, valid=valid, reverse=reverse, gates=gates, w_ih=w_ih,
                     w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, nonlinearity=nonlinearity)
    return y, h, cache


def rnn_backward(dy, dh_n, cache: RNNCache) -> dict[str, np.ndarray | None]:
    """Backpropagation through time for rnn_forward.

    Walking the steps backward (:mod:`rnnlab.reference`, every backward):

        dh_t  = dy_t + W_hhᵀ da_{t+1}        (dh_n in place of W_hhᵀ da_{t+1} at the last step)
        da_t  = dh_t ⊙ act'(a_t)             tanh' = 1 - tanh², relu' = [a > 0]
        dx_t  = W_ihᵀ da_t
        dW_ih = Σ_t da_t x_tᵀ     dW_hh = Σ_t da_t h_{t-1}ᵀ     db_ih = db_hh = Σ_t da_t
        dh0   = W_hhᵀ da at the first processed step

    Shapes: dy (T, B, H) or None, dh_n (B, H) or None.
    Returns the gradients "x", "h0", "w_ih", "w_hh", "b_ih", "b_hh" and "h".
    """
    check_cache(cache, RNNCache, "rnn_forward")
    dy, d_final = loss_grads(cache, dy, dh_n)
    x, w_ih, w_hh = cache.x, cache.w_ih, cache.w_hh
    _, act_grad = _ACTIVATIONS[cache.nonlinearity]
    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db = np.zeros(w_hh.shape[0])

    def step(t, dh):
        nonlocal dw_hh                                # the sums over steps
        da = dh * act_grad(cache.gates["a"][t])       # h_t = act(a_t)
        dx[t] = input_backward(da, x[t], w_ih, dw_ih, db)  # a_t = W_ih x_t + b_ih + b_hh
        dw_hh += da.T @ cache.h_prev[t]               #       + W_hh h_{t-1}
        return (da @ w_hh,)

    dh, (dh0,) = walk_back(step, dy, d_final, cache.valid, cache.reverse)
    return {"x": dx, "h0": dh0, "w_ih": dw_ih, "w_hh": dw_hh, **bias_grads(cache, db), "h": dh}

"""Helpers shared by the reference cells: σ, argument checks, the step mask and step order,
the forward's and the backward's time loops, the cache every backward reads, and the bias
gradients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sigmoid(a: np.ndarray) -> np.ndarray:
    """σ(a) = 1 / (1 + e^{-a}), accurate for every float64 a (e^{-a} may overflow to inf: σ = 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def hidden_size(name: str, weight, n_gates: int, legend: str) -> int:
    """H read off a weight (`name`: the recurrent one, or a min cell's W_ih) whose rows are
    n_gates blocks of H."""
    shape = np.shape(weight)
    if len(shape) != 2 or shape[0] == 0 or shape[0] % n_gates:
        blocks = "" if n_gates == 1 else f", its rows {n_gates} gate blocks of H"
        raise ValueError(f"{name} must be a 2-D array of shape {legend}{blocks}; got shape {shape}")
    return shape[0] // n_gates


def as_float64(name: str, value, legend: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """`value` as a float64 array of the expected `shape` (None: any size); `legend` names the dims.

    The error names the argument, the expected shape in symbols and in numbers, and what came.
    """
    array = np.asarray(value, dtype=np.float64)
    fits = array.ndim == len(shape) and all(
        want in (None, got) for want, got in zip(shape, array.shape, strict=True)
    )
    if not fits:
        sizes = f" = {shape}" if None not in shape else f", a {len(shape)}-D array"
        raise ValueError(f"{name} must have shape {legend}{sizes}; got shape {array.shape}")
    return array


def optional_float64(name: str, value, legend: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """Like as_float64, with None passed through (an absent bias)."""
    return None if value is None else as_float64(name, value, legend, shape)


def float64_or(name: str, value, default: float, legend: str, shape: tuple[int, ...]):
    """Like as_float64, with None meaning the constant `default` at every entry (a gain of 1,
    a dropout multiplier of 1, a zoneout share of 0)."""
    return as_float64(name, np.full(shape, default) if value is None else value, legend, shape)


def grad_or_zeros(name: str, value, legend: str, shape: tuple[int, ...]) -> np.ndarray:
    """An incoming gradient of the expected shape; None means the loss does not depend on it."""
    return np.zeros(shape) if value is None else as_float64(name, value, legend, shape)


def step_mask(lengths, T: int, B: int) -> np.ndarray:
    """(T, B, 1) bool: True where step t lies in sample b's valid span, t < lengths[b].

    lengths: (B,) integers in [1, T], or None for all T steps valid.
    """
    if lengths is None:
        return np.ones((T, B, 1), dtype=bool)
    lengths = np.asarray(lengths)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},); got shape {lengths.shape}")
    if not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must hold integers; got dtype {lengths.dtype}")
    if np.any((lengths < 1) | (lengths > T)):
        raise ValueError(f"lengths must lie in [1, T] = [1, {T}]; got {lengths.tolist()}")
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def time_steps(T: int, reverse: bool) -> list[int]:
    """The order in which the forward pass visits the steps: 0 … T-1, or T-1 … 0 when reverse.

    With the step mask this is all a reverse direction needs: sample b's padding steps
    t ≥ lengths[b] come first and leave its state at h0, then its span runs lengths[b]-1 … 0.
    Backward visits the same steps in the opposite order.
    """
    return list(reversed(range(T))) if reverse else list(range(T))


def sequence(x, lengths) -> tuple[np.ndarray, np.ndarray]:
    """x as a float64 (T, B, I) array with its padding steps zeroed, and its step_mask.

    Padding never reaches the math: whatever a padding step of x holds (even NaN) enters as 0.
    """
    x = as_float64("x", x, "(T, B, I)", (None, None, None))
    valid = step_mask(lengths, x.shape[0], x.shape[1])
    return np.where(valid, x, 0.0), valid


def cell_arguments(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates: int) -> tuple:
    """The checked float64 arguments of a one-state cell whose weights stack `gates` blocks
    of H (the RNN 1, the GRUs 3, minGRU 2, minLSTM 3): (x with its padding steps zeroed,
    valid, h0 (B, H), w_ih (G·H, I), w_hh (G·H, H), b_ih, b_hh (G·H,) or None). The min
    cells pass w_hh = b_hh = None (they have no recurrent weight; H is read off w_ih)."""
    G = "" if gates == 1 else str(gates)
    if w_hh is None:
        H = hidden_size("w_ih", w_ih, gates, f"({G}H, I)")
    else:
        H = hidden_size("w_hh", w_hh, gates, f"({G}H, H)")
    x, valid = sequence(x, lengths)
    B, I = x.shape[1:]
    return (
        x,
        valid,
        as_float64("h0", h0, "(B, H)", (B, H)),
        as_float64("w_ih", w_ih, f"({G}H, I)", (gates * H, I)),
        optional_float64("w_hh", w_hh, f"({G}H, H)", (gates * H, H)),
        optional_float64("b_ih", b_ih, f"({G}H,)", (gates * H,)),
        optional_float64("b_hh", b_hh, f"({G}H,)", (gates * H,)),
    )


def summed_bias(b_ih: np.ndarray | None, b_hh: np.ndarray | None) -> np.ndarray | float:
    """b_ih + b_hh, an absent bias counting 0: the cells that add both to one pre-activation."""
    return (0.0 if b_ih is None else b_ih) + (0.0 if b_hh is None else b_hh)


def step_record(T: int, B: int, widths: dict[str, int]) -> dict[str, np.ndarray]:
    """A record of the forward's steps for `walk`: name -> zeros (T, B, width)."""
    return {name: np.zeros((T, B, width)) for name, width in widths.items()}


def walk(step, states: tuple, valid: np.ndarray, reverse: bool, *records: dict):
    """Every forward's time loop, with the package's lengths, padding and reverse.

    At each step t in forward order, ``step(t, *states)`` returns ``(new states, *values)``,
    one dict of values per record (``step_record``). A valid step takes the new states and
    writes its values at t; a padding step keeps the states and leaves 0 there.
    Returns (y, final states, states entering each step): y (T, B, ·) is the first state
    after each step, 0 at padding steps (y_t = h_t); the others are (T, B, ·) per state.
    """
    T = valid.shape[0]
    before = tuple(np.zeros((T, *state.shape)) for state in states)
    y = np.zeros((T, *states[0].shape))
    for t in time_steps(T, reverse):
        keep = valid[t]                                   # (B, 1)
        for entering, state in zip(before, states, strict=True):
            entering[t] = state
        new, *values = step(t, *states)
        states = tuple(np.where(keep, n, s) for n, s in zip(new, states, strict=True))
        y[t] = np.where(keep, states[0], 0.0)
        for record, named in zip(records, values, strict=True):
            for name, value in named.items():
                record[name][t] = np.where(keep, value, 0.0)
    return y, states, before


def walk_back(step, dy: np.ndarray, d_final: tuple, valid: np.ndarray, reverse: bool):
    """Every backward's time loop: the steps in the opposite order to the forward's `walk`.

    At step t, ``step(t, dh_t, *d_others)`` gets dh_t = dy_t + what h_t gave the step after
    it (the total ∂L/∂h_t) and the other states' gradients from later, each 0 at a padding
    step, and returns what each state entering step t gets from it. A padding step hands the
    gradients from later through unchanged. `d_final` holds the final states' gradients
    (dh_n first). Returns (dh, the initial states' gradients): dh (T, B, P) every step's
    total ∂L/∂h_t, 0 at padding steps.
    """
    T = valid.shape[0]
    dh_record = np.zeros(dy.shape)
    d_next = d_final                                      # ∂L/∂(states after step t) from later
    for t in reversed(time_steps(T, reverse)):
        keep = valid[t]
        dh = np.where(keep, dy[t] + d_next[0], 0.0)       # h_t feeds y_t and the next step
        d_others = (np.where(keep, d, 0.0) for d in d_next[1:])
        got = step(t, dh, *d_others)
        d_next = tuple(g + np.where(keep, 0.0, d) for g, d in zip(got, d_next, strict=True))
        dh_record[t] = dh
    return dh_record, d_next


def input_backward(da, x_t, w_ih, dw_ih, db_ih) -> np.ndarray:
    """Through a_t = W_ih x_t + b_ih (every block of W_ih at once): adds da_t x_tᵀ into dw_ih
    and Σ da_t into db_ih; returns dx_t = W_ihᵀ da_t."""
    dw_ih += da.T @ x_t
    db_ih += da.sum(axis=0)
    return da @ w_ih


@dataclass(frozen=True, eq=False)
class SequenceCache:
    """What every family's backward needs from its forward; each family's cache adds its own.

    x       (T, B, I)  the inputs, 0 at padding steps (padding never reaches the math)
    h_prev  (T, B, P)  h_{t-1}, the state entering step t
    valid   (T, B, 1)  True where t < lengths[b]
    reverse            the direction the forward walked
    gates   the family's per-step activations, each (T, B, ·) and 0 at padding steps
    """

    x: np.ndarray
    h_prev: np.ndarray
    valid: np.ndarray
    reverse: bool
    gates: dict[str, np.ndarray]


def loss_grads(cache, dy, *d_final, P: str = "H") -> tuple[np.ndarray, tuple]:
    """A backward's loss gradients, checked against its forward's shapes, None as zeros:
    dy (T, B, P), then dh_n (B, P) and, for the LSTMs, dc_n (B, H). `P` names the output
    size in errors ("P" where the LSTM may project). Returns (dy, final-state gradients)."""
    T, B, size = cache.h_prev.shape
    dy = grad_or_zeros("dy", dy, f"(T, B, {P})", (T, B, size))
    named = [("dh_n", f"(B, {P})", size)]
    if len(d_final) == 2:
        named.append(("dc_n", "(B, H)", cache.c_prev.shape[2]))
    return dy, tuple(
        grad_or_zeros(name, d, legend, (B, width))
        for (name, legend, width), d in zip(named, d_final, strict=True)
    )


def check_cache(cache, cls: type, forward: str) -> None:
    """A backward's one check of its cache: the `cls` that `forward` returned, else TypeError.

    The type must be `cls` itself: a variant's cache (a subclass) holds other activations.
    """
    if type(cache) is not cls:
        raise TypeError(
            f"cache must be the {cls.__name__} from {forward}; got {type(cache).__name__}"
        )


def bias_grads(cache, db_ih: np.ndarray, db_hh: np.ndarray | None = None) -> dict:
    """The entries "b_ih", "b_hh" of a backward's result, None for an absent bias.

    Without `db_hh` both biases enter one sum (db_hh = db_ih), returned as distinct arrays.
    """
    db_hh = db_ih.copy() if db_hh is None else db_hh
    return {
        "b_ih": None if cache.b_ih is None else db_ih,
        "b_hh": None if cache.b_hh is None else db_hh,
    }

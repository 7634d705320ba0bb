"""Helpers shared by the reference cells: σ, argument checks, the step mask and step order."""

from __future__ import annotations

import numpy as np


def sigmoid(a: np.ndarray) -> np.ndarray:
    """σ(a) = 1 / (1 + e^{-a}), accurate for every float64 a (e^{-a} may overflow to inf: σ = 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def hidden_size(w_hh, n_gates: int, legend: str) -> int:
    """H read off the recurrent weight, whose rows are n_gates blocks of H."""
    shape = np.shape(w_hh)
    if len(shape) != 2 or shape[0] == 0 or shape[0] % n_gates:
        blocks = "" if n_gates == 1 else f", its rows {n_gates} gate blocks of H"
        raise ValueError(f"w_hh must be a 2-D array of shape {legend}{blocks}; got shape {shape}")
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

"""Argument and input validation shared by the layers and cells.

Every check raises an error whose message names the argument, what it was and what was
expected, of the class torch.nn raises for the same mistake (:mod:`rnnlab.nn.errors`:
``ArgumentError`` is a ``ValueError`` and a ``RuntimeError``). Checks that need tensor
*values* (lengths, NaN) are skipped while ``torch.compile`` traces, where they would
break the graph.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from rnnlab.nn.errors import ArgumentError, DtypeError


def positive_int(name: str, value: object, minimum: int = 1) -> int:
    """A size: ``TypeError`` unless an int (as torch.nn), ``ArgumentError`` below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}"
        )
    if value < minimum:
        raise ArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def same_dtype_device(name: str, t: Tensor, ref: Tensor) -> None:
    """``t`` must share the parameters' dtype and device (``ref`` is a parameter)."""
    if not t.dtype.is_floating_point:
        raise DtypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.dtype != ref.dtype:
        raise DtypeError(
            f"{name} has dtype {t.dtype} but the layer's parameters are {ref.dtype}; "
            f"convert one of them (e.g. layer.to({t.dtype}) or {name}.to({ref.dtype}))"
        )
    if t.device != ref.device:
        raise ArgumentError(
            f"{name} is on device {t.device} but the layer's parameters are on {ref.device}"
        )


def shape(name: str, t: Tensor, expected: tuple[int, ...], legend: str) -> None:
    if tuple(t.shape) != expected:
        raise ArgumentError(
            f"{name} has shape {tuple(t.shape)}, expected {expected} ({legend})"
        )


def finite(name: str, t: Tensor) -> None:
    if torch.compiler.is_compiling():
        return
    if not bool(torch.isfinite(t).all()):
        bad = torch.nonzero(~torch.isfinite(t))[0].tolist()
        raise ValueError(f"{name} contains NaN or Inf (first at index {bad}); check_finite=True")


def lengths(value: object, batch: int, steps: int, device: torch.device) -> Tensor:
    """Per-sample lengths as an int64 tensor (B,) on ``device``, each in [1, steps]."""
    if isinstance(value, Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {value.dtype}")
        t = value
    elif isinstance(value, (list, tuple)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
    ):
        t = torch.tensor(list(value), dtype=torch.int64)
    else:
        raise TypeError(
            f"lengths must be a 1-D integer tensor or a list of ints, got {type(value).__name__}"
        )
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(
            f"lengths has shape {tuple(t.shape)}, expected ({batch},): one length per sample"
        )
    if not torch.compiler.is_compiling() and batch > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 1 or hi > steps:
            raise ValueError(
                f"lengths must lie in [1, {steps}] (the sequence length), got values in "
                f"[{lo}, {hi}]"
            )
    return t.to(device=device, dtype=torch.int64)


def layer_norm(value: object, family: str, proj_size: int) -> bool:
    """``layer_norm``: a bool, only for the LSTM and the GRU, and not with a projection."""
    value = boolean("layer_norm", value)
    if value and family not in ("lstm", "gru"):
        raise ArgumentError(
            f"layer_norm=True is only supported by LSTM and GRU (and their cells), not "
            f"{family.upper()}"
        )
    if value and proj_size:
        raise ArgumentError(
            f"layer_norm=True does not support proj_size > 0 (got proj_size={proj_size}): "
            "the layer-normalised LSTM has no projection; use proj_size=0"
        )
    return value

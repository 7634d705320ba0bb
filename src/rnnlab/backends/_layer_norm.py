"""Layer normalisation over the last dimension, as :mod:`rnnlab.reference.lnlstm` writes it:
the ε every backend uses and the hand-derived gradient through a normalisation."""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-5  # Haste's and torch.nn.LayerNorm's ε


def normalise(v: Tensor) -> tuple[Tensor, Tensor]:
    """(v̂, rstd) over the last dimension: v̂ = (v - μ) · rstd, rstd = 1 / √(σ² + ε)
    (σ² the biased variance, as torch.nn.functional.layer_norm)."""
    var, mean = torch.var_mean(v, dim=-1, keepdim=True, correction=0)
    rstd = torch.rsqrt(var + EPS)
    return (v - mean) * rstd, rstd


def normalise_backward(d_hat: Tensor, v_hat: Tensor, rstd: Tensor) -> Tensor:
    """∂L/∂v from ∂L/∂v̂: rstd ⊙ (dv̂ - mean(dv̂) - v̂ ⊙ mean(dv̂ ⊙ v̂)), means over the last
    dimension."""
    mean_d = d_hat.mean(dim=-1, keepdim=True)
    mean_dv = (d_hat * v_hat).mean(dim=-1, keepdim=True)
    return rstd * (d_hat - mean_d - v_hat * mean_dv)

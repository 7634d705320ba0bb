"""The min cells' host code every backend shares, and their recurrence in torch ops.

minGRU and minLSTM (:mod:`rnnlab.reference.mingru`, :mod:`rnnlab.reference.minlstm`,
whose docstrings hold the equations) read x_t only in their gates, so every step is the
linear recurrence h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t pointwise functions of the
pre-activations u_t = W_ih x_t + b_ih:

    minGRU:  u = [u_z, h̃],       a = 1 - z = σ(-u_z),   b = z ⊙ h̃
    minLSTM: u = [u_f, u_i, h̃],  d = log σ(u_f) - log σ(u_i),  a = f' = σ(d),  b = i' ⊙ h̃
             with i' = σ(-d) = 1 - f' (never 0/0 when both gates underflow)

Backward is the same recurrence run backwards: the adjoint λ_t = ∂L/∂h_t obeys
λ_t = g_t + a_{t+1} ⊙ λ_{t+1} (g_t the gradient arriving at h_t), and then

    minGRU:  ∂L/∂u_z = λ ⊙ (h̃ - h_{t-1}) ⊙ z (1 - z),   ∂L/∂h̃ = λ ⊙ z
    minLSTM: e = λ ⊙ (h_{t-1} - h̃) ⊙ f' i'  (the gradient of d),
             ∂L/∂u_f = e ⊙ (1 - f),  ∂L/∂u_i = -e ⊙ (1 - i),  ∂L/∂h̃ = λ ⊙ i'

:class:`MinByRecurrence` is a backend's :class:`~rnnlab.backends.contract.MinKernels`
given the two recurrences (:meth:`~MinByRecurrence.states`, :meth:`~MinByRecurrence.adjoints`):
it owns the GEMMs around them (u for every step, then dx, dW_ih, db) and the padding
convention. :class:`TorchOpsMin` writes the recurrences in torch ops on any device,
solved by :func:`rnnlab.scan.linear_scan` (the parallel scan or the loop over steps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.backends._host import (
    input_grad,
    previous_states,
    project_inputs,
    valid_mask,
    weight_grad,
    zero_padding,
)
from rnnlab.backends.contract import MinForward, MinGrads, MinSaved, MinWeights, Sequence
from rnnlab.scan import linear_scan

GATE_BLOCKS = {"mingru": 2, "minlstm": 3}


class MinByRecurrence(ABC):
    """:class:`~rnnlab.backends.contract.MinKernels` for ``family`` ("mingru" or
    "minlstm") from a backend's two recurrences over the pre-activations u."""

    def __init__(self, family: str) -> None:
        if family not in GATE_BLOCKS:
            raise ValueError(f"family must be one of {', '.join(GATE_BLOCKS)}, got {family!r}")
        self.family = family

    @abstractmethod
    def states(
        self, u: Tensor, h0: Tensor, lengths: Tensor | None, h_probe: Tensor | None,
        reverse: bool, parallel: bool,
    ) -> tuple[Tensor, Tensor]:
        """(y (T, B, H), h_n (B, H)): every state, 0 at padding steps, and the last one
        (h0 for a sample of length 0). ``h_probe[t]`` is added to h_t after each step."""

    @abstractmethod
    def adjoints(
        self, u: Tensor, y: Tensor, h0: Tensor, dy: Tensor, dh_n: Tensor,
        lengths: Tensor | None, reverse: bool, parallel: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(du (T, B, G·H), dh0 (B, H), λ (T, B, H)): ∂L/∂u and λ_t = ∂L/∂h_t, both 0 at
        padding steps, and ∂L/∂h0. ``dy`` at padding steps is never read."""

    def forward(self, w: MinWeights, seq: Sequence, h0: Tensor, h_probe: Tensor | None,
                parallel: bool) -> MinForward:
        valid = valid_mask(seq.lengths, seq.x.shape[0])
        u = zero_padding(project_inputs(zero_padding(seq.x, valid), w.w_ih, w.b_ih), valid)
        y, h_n = self.states(u, h0, seq.lengths, h_probe, seq.reverse, parallel)
        return MinForward(y, h_n, u)

    def backward(self, w: MinWeights, seq: Sequence, h0: Tensor, saved: MinSaved, dy: Tensor,
                 dh_n: Tensor, parallel: bool, need_dh: bool, need_dx: bool) -> MinGrads:
        du, dh0, lam = self.adjoints(saved.u, saved.y, h0, dy, dh_n, seq.lengths, seq.reverse,
                                     parallel)
        x = zero_padding(seq.x, valid_mask(seq.lengths, seq.x.shape[0]))
        return MinGrads(input_grad(du, w.w_ih, need_dx), dh0, weight_grad(du, x),
                        du.sum(dim=(0, 1)), lam if need_dh else lam.new_empty(0))


# ------------------------------------------------------------------ the recurrences in torch ops


def coefficients(family: str, u: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) of h_t = a_t ⊙ h_{t-1} + b_t from the pre-activations u (T, B, G·H)."""
    if family == "mingru":
        u_z, h_tilde = u.chunk(2, dim=-1)
        return torch.sigmoid(-u_z), torch.sigmoid(u_z) * h_tilde
    u_f, u_i, h_tilde = u.chunk(3, dim=-1)
    d = F.logsigmoid(u_f) - F.logsigmoid(u_i)  # f'/i' = f/i
    return torch.sigmoid(d), torch.sigmoid(-d) * h_tilde


def _decay(family: str, u: Tensor) -> Tensor:
    """a alone (backward needs no b): 1 - z for minGRU, f' for minLSTM."""
    if family == "mingru":
        return torch.sigmoid(-u.chunk(2, dim=-1)[0])
    u_f, u_i, _ = u.chunk(3, dim=-1)
    return torch.sigmoid(F.logsigmoid(u_f) - F.logsigmoid(u_i))


def _pre_activation_grads(family: str, u: Tensor, lam: Tensor, h_prev: Tensor) -> Tensor:
    """∂L/∂u (T, B, G·H) from λ and h_{t-1} (the module docstring's formulas)."""
    if family == "mingru":
        u_z, h_tilde = u.chunk(2, dim=-1)
        z = torch.sigmoid(u_z)
        return torch.cat([lam * (h_tilde - h_prev) * z * torch.sigmoid(-u_z), lam * z], dim=-1)
    u_f, u_i, h_tilde = u.chunk(3, dim=-1)
    d = F.logsigmoid(u_f) - F.logsigmoid(u_i)
    f_norm, i_norm = torch.sigmoid(d), torch.sigmoid(-d)
    e = lam * (h_prev - h_tilde) * f_norm * i_norm
    return torch.cat([e * torch.sigmoid(-u_f), -e * torch.sigmoid(-u_i), lam * i_norm], dim=-1)


def _in_order(t: Tensor | None, reverse: bool) -> Tensor | None:
    """Time-major ↔ processing order (the same flip both ways)."""
    return t.flip(0) if reverse and t is not None else t


class TorchOpsMin(MinByRecurrence):
    """The recurrences in torch tensor ops, on any device: the pointwise math over all
    steps at once and :func:`rnnlab.scan.linear_scan` for the recurrence (a padding step
    keeps the state: a = 1, b = 0; ``reverse`` flips time, since valid steps form a
    prefix of every sample, flipped they are a suffix whose a = 1 steps come first)."""

    def states(self, u, h0, lengths, h_probe, reverse, parallel):
        valid = valid_mask(lengths, u.shape[0])
        a, b = coefficients(self.family, u)
        if h_probe is not None:
            b = b + h_probe
        if valid is not None:
            a, b = torch.where(valid, a, 1.0), torch.where(valid, b, 0.0)
        states = _in_order(
            linear_scan(_in_order(a, reverse), _in_order(b, reverse), h0, parallel), reverse
        )
        h_n = states[0] if reverse else states[-1]
        return zero_padding(states, valid), h_n.clone()

    def adjoints(self, u, y, h0, dy, dh_n, lengths, reverse, parallel):
        valid = valid_mask(lengths, u.shape[0])
        a = _decay(self.family, u)
        g = zero_padding(dy, valid)
        if valid is not None:
            a = torch.where(valid, a, 1.0)
        # processing order k = 0 … T-1; λ_k = g_k + a_{k+1} λ_{k+1}, dh_n arriving at k = T-1
        a_k, g_k = _in_order(a, reverse), _in_order(g, reverse).clone()
        g_k[-1] += dh_n
        a_next = torch.cat([a_k[1:], torch.zeros_like(a_k[:1])])
        lam = _in_order(
            linear_scan(a_next.flip(0), g_k.flip(0), torch.zeros_like(h0), parallel).flip(0),
            reverse,
        )
        dh0 = a_k[0] * _in_order(lam, reverse)[0]
        h_prev = previous_states(y, h0, lengths, reverse)
        du = _pre_activation_grads(self.family, u, lam, h_prev)
        return zero_padding(du, valid), dh0, zero_padding(lam, valid)

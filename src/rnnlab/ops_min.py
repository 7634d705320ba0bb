"""The min cells' custom ops: ``rnnlab::mingru`` and ``rnnlab::minlstm`` (Feng et al. 2024).

Each op runs **one direction of one layer over the whole sequence** (time-major), as
the classic ops of :mod:`rnnlab.ops` do, and returns (y, h_n, u): the outputs, the final
state and the gate pre-activations u = W_ih x_t + b_ih (zero at padding steps), which
are what backward needs (and what recording shows). Signatures::

    mingru (x, h0, w_ih (2H, I), b_ih?, lengths?, h_probe?, reverse, parallel) -> y, h_n, u (T,B,2H)
    minlstm(x, h0, w_ih (3H, I), b_ih?, lengths?, h_probe?, reverse, parallel) -> y, h_n, u (T,B,3H)

The gates read x_t only, so every step is h_t = a_t ⊙ h_{t-1} + b_t with a_t ∈ (0, 1)
(minGRU: a = 1 - z = σ(-u_z), b = z ⊙ h̃; minLSTM: a = f' = σ(log σ(u_f) - log σ(u_i)),
b = i' ⊙ h̃ with i' = 1 - f', which never divides 0 by 0 when both gates underflow).
One GEMM projects every step's input; :func:`rnnlab.scan.linear_scan` then solves the
recurrence, by the parallel scan (``parallel=True``) or the loop over steps. Backward
(the ops ``rnnlab::mingru_backward``, ``rnnlab::minlstm_backward``) is the same scan run
backwards: the adjoint λ_t = ∂L/∂h_t obeys λ_t = g_t + a_{t+1} ⊙ λ_{t+1}, g_t the
gradient arriving at h_t; the gates' gradients are then pointwise and the weights' one
GEMM each. All of it is torch tensor ops: the portable path, and for now the GPU path.

``h_probe`` (T, B, H) is added to h_t after every valid step (zeros change nothing; its
gradient is the total ∂L/∂h_t), as for the classic ops. A padding step t ≥ lengths[b]
keeps the state (a = 1, b = 0) and outputs 0; its input is never read.

Double backward: inside a recorded backward (``create_graph=True``) the formulas
recompute the forward with differentiable torch ops from the saved inputs and return
``torch.autograd.grad(..., create_graph=True)`` of it, as the classic ops do.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.ops import _define_family
from rnnlab.scan import linear_scan

__all__ = ["GATE_BLOCKS", "mingru", "mingru_backward", "minlstm", "minlstm_backward"]

GATE_BLOCKS = {"mingru": 2, "minlstm": 3}


# ------------------------------------------------------------------ the cells' pointwise math


def _coefficients(family: str, u: Tensor) -> tuple[Tensor, Tensor]:
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
    """∂L/∂u (T, B, G·H) from λ = ∂L/∂h_t and h_{t-1}, the derivative of _coefficients.

    minGRU:  ∂L/∂u_z = λ ⊙ (h̃ - h_{t-1}) ⊙ z(1 - z),     ∂L/∂h̃ = λ ⊙ z
    minLSTM: with e = λ ⊙ (h_{t-1} - h̃) ⊙ f' i' (the gradient of d = log f - log i),
             ∂L/∂u_f = e ⊙ (1 - f),  ∂L/∂u_i = -e ⊙ (1 - i),  ∂L/∂h̃ = λ ⊙ i'
    """
    if family == "mingru":
        u_z, h_tilde = u.chunk(2, dim=-1)
        z = torch.sigmoid(u_z)
        return torch.cat([lam * (h_tilde - h_prev) * z * torch.sigmoid(-u_z), lam * z], dim=-1)
    u_f, u_i, h_tilde = u.chunk(3, dim=-1)
    d = F.logsigmoid(u_f) - F.logsigmoid(u_i)
    f_norm, i_norm = torch.sigmoid(d), torch.sigmoid(-d)
    e = lam * (h_prev - h_tilde) * f_norm * i_norm
    return torch.cat([e * torch.sigmoid(-u_f), -e * torch.sigmoid(-u_i), lam * i_norm], dim=-1)


def _valid(lengths: Tensor | None, T: int) -> Tensor | None:
    """(T, B, 1) bool, True where t < lengths[b]; None when every step is valid."""
    if lengths is None:
        return None
    return (torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]).unsqueeze(-1)


def _in_order(t: Tensor | None, reverse: bool) -> Tensor | None:
    """Time-major ↔ processing order (the same flip both ways)."""
    return t.flip(0) if reverse and t is not None else t


def _project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, valid: Tensor | None) -> Tensor:
    """u = W_ih x_t + b_ih for every step in one GEMM, (T, B, G·H); 0 at padding steps."""
    if valid is not None:
        x = torch.where(valid, x, 0.0)
    flat = x.reshape(-1, x.shape[-1])
    u = (flat @ w_ih.T if b_ih is None else torch.addmm(b_ih, flat, w_ih.T))
    u = u.reshape(x.shape[0], x.shape[1], -1)
    return u if valid is None else torch.where(valid, u, 0.0)


def _forward(family, x, h0, w_ih, b_ih, lengths, h_probe, reverse, parallel):
    T = x.shape[0]
    valid = _valid(lengths, T)
    u = _project(x, w_ih, b_ih, valid)
    a, b = _coefficients(family, u)
    if h_probe is not None:
        b = b + h_probe
    if valid is not None:
        a, b = torch.where(valid, a, 1.0), torch.where(valid, b, 0.0)
    states = _in_order(linear_scan(_in_order(a, reverse), _in_order(b, reverse), h0, parallel),
                       reverse)
    h_n = states[0] if reverse else states[-1]
    y = states if valid is None else torch.where(valid, states, 0.0)
    return y, h_n.clone(), u


def _backward(family, dy, dh_n, x, h0, w_ih, y, u, lengths, reverse, parallel, need_dh):
    T = x.shape[0]
    valid = _valid(lengths, T)
    a = _decay(family, u)
    g = dy if valid is None else torch.where(valid, dy, 0.0)
    if valid is not None:
        a = torch.where(valid, a, 1.0)
    # processing order k = 0 … T-1; λ_k = g_k + a_{k+1} λ_{k+1}, with dh_n arriving at k = T-1
    a_k, g_k, y_k, valid_k = (_in_order(t, reverse) for t in (a, g, y, valid))
    g_k = g_k.clone()
    g_k[-1] += dh_n
    a_next = torch.cat([a_k[1:], torch.zeros_like(a_k[:1])])
    lam = linear_scan(a_next.flip(0), g_k.flip(0), torch.zeros_like(h0), parallel).flip(0)
    dh0 = a_k[0] * lam[0]
    # h_{k-1}: the previous output where that step was valid, else h0 (padding kept it)
    prev = y_k[:-1] if valid_k is None else torch.where(valid_k[:-1], y_k[:-1], h0)
    h_prev = torch.cat([h0.unsqueeze(0), prev])
    du = _pre_activation_grads(family, _in_order(u, reverse), lam, h_prev)
    if valid_k is not None:
        du, lam = torch.where(valid_k, du, 0.0), torch.where(valid_k, lam, 0.0)
    du, lam = _in_order(du, reverse), _in_order(lam, reverse)
    if valid is not None:
        x = torch.where(valid, x, 0.0)
    flat_du = du.reshape(-1, du.shape[-1])
    dx = (flat_du @ w_ih).reshape(x.shape)
    dw_ih = flat_du.T @ x.reshape(-1, x.shape[-1])
    db = flat_du.sum(0)
    return dx, dh0, dw_ih, db, (lam if need_dh else y.new_empty(0))


# ------------------------------------------------------------------ the ops


class _Forward(NamedTuple):
    y: Tensor  # (T, B, H)
    h_n: Tensor  # (B, H)
    u: Tensor  # (T, B, G·H) gate pre-activations, saved for backward


class _Grads(NamedTuple):
    dx: Tensor
    dh0: Tensor
    dw_ih: Tensor
    db: Tensor  # the gradient of b_ih
    dh: Tensor  # (T, B, H) total ∂L/∂h_t, empty unless asked for


class _Scan(NamedTuple):
    """The family's forward and backward in torch ops, on any device (no backend)."""

    family: str

    def forward(self, *args):
        return _forward(self.family, *args)

    def backward(self, *args):
        return _backward(self.family, *args)


def _entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, b_ih: Tensor | None, lengths: Tensor | None,
    h_probe: Tensor | None, reverse: bool, parallel: bool,
):
    """A min cell over a sequence: returns y (T,B,H), h_n (B,H), u (T,B,G·H)."""
    return x, h0, w_ih, b_ih, lengths, h_probe, reverse, parallel


def _backward_entry(
    dy: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, y: Tensor, u: Tensor,
    lengths: Tensor | None, reverse: bool, parallel: bool, need_dh: bool,
):
    return dy, dh_n, x, h0, w_ih, y, u, lengths, reverse, parallel, need_dh


def _shapes(named) -> tuple[tuple, ...]:
    (T, B), H = named["x"].shape[:2], named["h0"].shape[-1]
    return (T, B, H), (B, H), (T, B, named["w_ih"].shape[0])  # y, h_n, u


def _define(family: str):
    """rnnlab::<family> and rnnlab::<family>_backward, registered as the classic ops are
    (:func:`rnnlab.ops._define_family`), with the scan for kernels."""
    scan = _Scan(family)
    return _define_family(
        family, lambda x: scan, _entry, _backward_entry, outputs=_Forward, grads=_Grads,
        shapes=_shapes, outputs_of=lambda *args: scan.forward(*args)[:2], infer=False,
    )


mingru, mingru_backward = _define("mingru")
minlstm, minlstm_backward = _define("minlstm")

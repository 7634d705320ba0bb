"""Host-side helpers every backend shares: time order, masks, the GEMMs over all steps
outside the recurrence (input projection, weight and input gradients)."""

from __future__ import annotations

import torch
from torch import Tensor


def time_steps(T: int, reverse: bool) -> range:
    """The order in which a direction visits the time steps."""
    return range(T - 1, -1, -1) if reverse else range(T)


def valid_mask(lengths: Tensor | None, T: int) -> Tensor | None:
    """(T, B, 1) bool: True where step t is inside sample b's length; None if all are."""
    if lengths is None:
        return None
    steps = torch.arange(T, device=lengths.device)
    return (steps[:, None] < lengths[None, :]).unsqueeze(-1)


def zero_padding(x: Tensor, valid: Tensor | None) -> Tensor:
    """x with its padding steps set to 0 (a copy only when there is padding)."""
    return x if valid is None else x.masked_fill(~valid, 0.0)


def previous_states(seq: Tensor, init: Tensor, lengths: Tensor | None, reverse: bool) -> Tensor:
    """For every step t, the state the recurrence read before step t.

    ``seq`` holds the state after each step (zero at padding steps). At a valid step
    the previous state is the neighbour in processing order if that step is valid,
    otherwise the initial state. Values at padding steps are irrelevant.
    """
    if not reverse:
        return torch.cat([init.unsqueeze(0), seq[:-1]], dim=0)
    prev = torch.cat([seq[1:], init.unsqueeze(0)], dim=0)
    if lengths is not None:
        T = seq.shape[0]
        next_valid = valid_mask(lengths, T + 1)[1:]  # step t+1 < lengths
        prev = torch.where(next_valid, prev, init.unsqueeze(0))
    return prev


def project_inputs(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """x·W_ihᵀ (+ bias) for all time steps as one GEMM: (T, B, I) -> (T, B, G), or packed
    rows (N, I) -> (N, G)."""
    flat = x.reshape(x.shape[:-1].numel(), x.shape[-1])
    out = torch.addmm(bias, flat, w_ih.t()) if bias is not None else flat @ w_ih.t()
    return out.view(*x.shape[:-1], -1)


def sum_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return b_ih + b_hh


def weight_grad(d: Tensor, inp: Tensor) -> Tensor:
    """Σ_t dᵀ·inp over all steps and samples as one GEMM: (T,B,G),(T,B,K) -> (G, K)."""
    rows = d.shape[:-1].numel()  # (explicit: with K = 0 a shape (-1, K) would be ambiguous)
    return d.reshape(rows, d.shape[-1]).t() @ inp.reshape(rows, inp.shape[-1])


def input_grad(d: Tensor, w_ih: Tensor, need_dx: bool) -> Tensor:
    """dx = d·W_ih for all steps as one GEMM: (T, B, G) -> (T, B, I); empty (the product
    not run) unless ``need_dx``."""
    if not need_dx:
        return d.new_empty(0)
    T, B, G = d.shape
    return (d.reshape(T * B, G) @ w_ih).view(T, B, -1)


def empty_grad(ref: Tensor) -> Tensor:
    """Placeholder for a gradient that was not asked for (ops cannot return None)."""
    return ref.new_empty(0)


def gru_parameter_grads(
    dgx: Tensor, x: Tensor, w_ih: Tensor, h_prev_seq: Tensor, gates: Tensor, reset_after: bool,
    need_dx: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """dx (empty unless ``need_dx``), dW_ih, dW_hh, db_ih, db_hh from the input
    pre-activation gradients dgx (T,B,3H) of every step: single GEMMs over all steps, after
    the recurrence (shared by backends)."""
    H = h_prev_seq.shape[-1]
    r_seq = gates[..., :H]
    dx = input_grad(dgx, w_ih, need_dx)
    dw_ih = weight_grad(dgx, x)
    db_ih = dgx.sum(dim=(0, 1))
    if reset_after:
        dgh = torch.cat([dgx[..., : 2 * H], dgx[..., 2 * H :] * r_seq], dim=2)  # ∂L/∂hn = dn ⊙ r
        dw_hh = weight_grad(dgh, h_prev_seq)
        db_hh = dgh.sum(dim=(0, 1))
    else:
        dw_hh = torch.cat(
            [
                weight_grad(dgx[..., : 2 * H], h_prev_seq),
                weight_grad(dgx[..., 2 * H :], r_seq * h_prev_seq),  # input of W_hn: r ⊙ h_prev
            ],
            dim=0,
        )
        db_hh = db_ih.clone()
    return dx, dw_ih, dw_hh, db_ih, db_hh


def advance(
    new: Tensor, old: Tensor, valid: Tensor | None, t: int, h_probe: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(state after step t, output of step t) from the step's new state (plus the probe's
    step t, when given): a padding step keeps the old state and outputs 0. Out of place."""
    if h_probe is not None:
        new = new + h_probe[t]
    if valid is None:
        return new, new
    m = valid[t]
    return torch.where(m, new, old), torch.where(m, new, 0.0)


def parameter_grads(
    d: Tensor, x: Tensor, w_ih: Tensor, y: Tensor, h0: Tensor, lengths: Tensor | None,
    reverse: bool, need_dx: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx (empty unless ``need_dx``), dW_ih, dW_hh, db of a recurrence whose
    pre-activations are x·W_ihᵀ + h_{t-1}·W_hhᵀ + b (RNN, LSTM), from their gradients d
    (T,B,G) of every step: single GEMMs over all steps, after the recurrence (h_{t-1}
    recovered from y and h0)."""
    h_prev = previous_states(y, h0, lengths, reverse)
    dx = input_grad(d, w_ih, need_dx)
    return dx, weight_grad(d, x), weight_grad(d, h_prev), d.sum(dim=(0, 1))


def projection_grad(dh: Tensor, gates: Tensor, c: Tensor) -> Tensor:
    """dW_hr = Σ_t dh_t m_tᵀ of an LSTM projection, with m_t = o ⊙ tanh(c_t) rebuilt from
    the saved gates (T,B,4H) and cell states (T,B,H)."""
    o = gates[..., 3 * c.shape[-1] :]
    return weight_grad(dh, o * torch.tanh(c))

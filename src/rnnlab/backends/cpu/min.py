"""minGRU and minLSTM, cpu backend: each direction's recurrence in one compiled loop.

The equations, forward and backward, are those of :mod:`rnnlab.backends._min` (from
:mod:`rnnlab.reference.mingru` and :mod:`rnnlab.reference.minlstm`); the GEMMs around
the recurrence (u = W_ih x_t + b_ih for all steps, then dx, dW_ih, db) are its
:class:`~rnnlab.backends._min.MinByRecurrence`'s. Here one pass per step and sample
computes a_t and b_t from u_t and advances h (forward), or λ and ∂L/∂u (backward), so
neither a nor b is ever stored: the compiled loop reads u and writes y, where the
torch-ops form makes some fifteen whole-sequence passes.

``parallel`` selects nothing here: a CPU's few threads get their parallelism from the
samples (:mod:`._parallel`, each part runs the whole loop for its rows), and the loop is
already O(T) without Python per step. The parallel scan over time is the torch-ops form's
(the portable and gpu backends); both compute the same states.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from rnnlab.backends._min import GATE_BLOCKS, MinByRecurrence
from rnnlab.backends.cpu._common import as_array, lengths_array, optional_array
from rnnlab.backends.cpu._jit import kernel
from rnnlab.backends.cpu._math import KERNEL_OPTIONS, exp, sigmoid
from rnnlab.backends.cpu._parallel import plan, run_parts


@njit(inline="always", fastmath=True, error_model="numpy")
def _normalised(u_f, u_i):
    """(f', i') = (f, i) / (f + i) for f = σ(u_f), i = σ(u_i). Since 1/σ(u) = 1 + e^{-u},
    f' = n_i / (n_f + n_i) and i' = n_f / (n_f + n_i) with n = e^m (1 + e^{-u}), scaled by
    m = min(u_f, u_i, 0): every exponent is ≤ 0 and one of n_f, n_i is ≥ 1, so nothing
    overflows or divides by 0, and the exponentials vectorise (the torch-ops form's
    log σ needs a scalar log a unit)."""
    m = min(min(u_f, u_i), u_f - u_f)
    e_m = exp(m)
    n_f, n_i = e_m + exp(m - u_f), e_m + exp(m - u_i)
    total = n_f + n_i
    return n_i / total, n_f / total


# Per-step passes over the hidden units of one sample: u (G·H,), rows (H,).
@kernel(**KERNEL_OPTIONS)
def _mingru_step(u, h, probe):
    """h ← (1 - z) ⊙ h + z ⊙ h̃ + probe, z = σ(u_z)."""
    H = h.shape[0]
    for j in range(H):
        u_z = u[j]
        h[j] = sigmoid(-u_z) * h[j] + sigmoid(u_z) * u[H + j] + probe[j]


@kernel(**KERNEL_OPTIONS)
def _minlstm_step(u, h, probe):
    """h ← f' ⊙ h + i' ⊙ h̃ + probe."""
    H = h.shape[0]
    for j in range(H):
        f_norm, i_norm = _normalised(u[j], u[H + j])
        h[j] = f_norm * h[j] + i_norm * u[2 * H + j] + probe[j]


@kernel(**KERNEL_OPTIONS)
def _mingru_step_back(u, h_prev, dy, carry, du, lam):
    """λ = dy + carry; ∂L/∂u from λ; carry ← a ⊙ λ (what reaches the step before)."""
    H = carry.shape[0]
    for j in range(H):
        u_z = u[j]
        z, a = sigmoid(u_z), sigmoid(-u_z)
        g = dy[j] + carry[j]
        du[j] = g * (u[H + j] - h_prev[j]) * z * a
        du[H + j] = g * z
        carry[j] = a * g
        lam[j] = g


@kernel(**KERNEL_OPTIONS)
def _minlstm_step_back(u, h_prev, dy, carry, du, lam):
    """As :func:`_mingru_step_back`, for minLSTM (e: the gradient of d = log(f / i))."""
    H = carry.shape[0]
    for j in range(H):
        u_f, u_i = u[j], u[H + j]
        f_norm, i_norm = _normalised(u_f, u_i)
        g = dy[j] + carry[j]
        e = g * (h_prev[j] - u[2 * H + j]) * f_norm * i_norm
        du[j] = e * sigmoid(-u_f)
        du[H + j] = -e * sigmoid(-u_i)
        du[2 * H + j] = g * i_norm
        carry[j] = f_norm * g
        lam[j] = g


@kernel(**KERNEL_OPTIONS)
def _states(u, h0, lengths, probe, reverse, lstm, y, h_n, rows):
    """y, h_n of the samples ``rows`` (forward); probe (T, B, H), or (0, 0, 0) for none."""
    T, H = u.shape[0], h0.shape[1]
    h = np.empty(H, dtype=h0.dtype)
    zeros = np.zeros(H, dtype=h0.dtype)
    for r in range(rows.shape[0]):
        b = rows[r]
        n = lengths[b]
        h[:] = h0[b]
        for k in range(n):
            t = n - 1 - k if reverse else k
            p = probe[t, b] if probe.shape[0] > 0 else zeros
            if lstm:
                _minlstm_step(u[t, b], h, p)
            else:
                _mingru_step(u[t, b], h, p)
            y[t, b, :] = h
        h_n[b, :] = h
        for t in range(n, T):
            y[t, b, :] = 0


@kernel(**KERNEL_OPTIONS)
def _adjoints(u, y, h0, dy, dh_n, lengths, reverse, lstm, du, dh0, lam, rows):
    """du, dh0, λ of the samples ``rows`` (backward), visiting each sample's valid steps
    in the reverse of the forward's order; ``carry`` holds a_{k+1} ⊙ λ_{k+1}, starting
    as dh_n (which arrives at the last step)."""
    T, H = u.shape[0], h0.shape[1]
    carry = np.empty(H, dtype=h0.dtype)
    for r in range(rows.shape[0]):
        b = rows[r]
        n = lengths[b]
        carry[:] = dh_n[b]
        for k in range(n - 1, -1, -1):
            t = n - 1 - k if reverse else k
            prev = h0[b] if k == 0 else y[t + 1 if reverse else t - 1, b]
            if lstm:
                _minlstm_step_back(u[t, b], prev, dy[t, b], carry, du[t, b], lam[t, b])
            else:
                _mingru_step_back(u[t, b], prev, dy[t, b], carry, du[t, b], lam[t, b])
        dh0[b, :] = carry
        for t in range(n, T):
            du[t, b, :] = 0
            lam[t, b, :] = 0


class CpuMin(MinByRecurrence):
    """:class:`~rnnlab.backends.contract.MinKernels` with compiled recurrences."""

    def _rows(self, lengths: np.ndarray, T: int, H: int) -> list[np.ndarray]:
        return plan(lengths, T, 10.0 * GATE_BLOCKS[self.family] * H)  # ~pointwise flops

    def states(self, u: Tensor, h0: Tensor, lengths, h_probe, reverse, parallel):
        T, B, H = u.shape[0], u.shape[1], h0.shape[-1]
        y, h_n = u.new_empty(T, B, H), u.new_empty(B, H)
        args = (as_array(u), as_array(h0), lengths_array(lengths, T, B),
                optional_array(h_probe, 3, u.dtype),
                reverse, self.family == "minlstm", y.numpy(), h_n.numpy())
        run_parts(lambda rows: _states(*args, rows), self._rows(args[2], T, H))
        return y, h_n

    def adjoints(self, u: Tensor, y: Tensor, h0: Tensor, dy: Tensor, dh_n: Tensor, lengths,
                 reverse, parallel):
        T, B, H = u.shape[0], u.shape[1], h0.shape[-1]
        du, dh0, lam = torch.empty_like(u), h0.new_empty(B, H), y.new_empty(T, B, H)
        lengths_np = lengths_array(lengths, T, B)
        args = (as_array(u), as_array(y), as_array(h0), as_array(dy), as_array(dh_n),
                lengths_np, reverse, self.family == "minlstm", du.numpy(), dh0.numpy(),
                lam.numpy())
        run_parts(lambda rows: _adjoints(*args, rows), self._rows(lengths_np, T, H))
        return du, dh0, lam

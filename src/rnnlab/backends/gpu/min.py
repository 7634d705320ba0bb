"""minGRU and minLSTM, Triton backend: each direction's recurrence in one launch, a
parallel scan over chunks of time steps.

The equations, forward and backward, are those of :mod:`rnnlab.backends._min` (from
:mod:`rnnlab.reference.mingru` and :mod:`rnnlab.reference.minlstm`); the GEMMs around the
recurrence are its :class:`~rnnlab.backends._min.MinByRecurrence`'s (cuBLAS).

A program owns one sample and a block of hidden units and walks the iterations s of
its direction (:mod:`._common`'s time order: every time index written once, padding
steps with zeros) in chunks of ``BLOCK_T``. In a chunk it computes the pairs (a_s, b_s)
from u (a = 1, b = 0 at padding steps), composes them with ``tl.associative_scan``
((a, b) ∘ (a', b') = (a' a, a' b + b'), the even-odd scan's composition, so the same
float32 accuracy) and applies the result to the state carried in from the chunk before:
h_s = A_s h_carry + B_s. Backward walks the chunks from the end, each loaded in reverse
order, and scans (a_{s+1}, g_s) the same way for λ_s = g_s + a_{s+1} λ_{s+1}, then writes
∂L/∂u from λ_s, u_s and h_{s-1}. ``parallel=False`` runs the same kernels one step per
chunk: the sequential form. Sums and the state are float32 whatever the dtype of u.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlab.backends._min import MinByRecurrence
from rnnlab.backends.gpu import _common as C

__all__ = ["GpuMin"]

BLOCK_T = 16  # steps composed by one associative scan (the parallel form)
BLOCK_H = 64  # hidden units of one program (fewer for a narrower layer)


@triton.jit
def _compose(a_first, b_first, a_then, b_then):
    """The step (a_then, b_then) after (a_first, b_first), as one step."""
    return a_then * a_first, a_then * b_first + b_then


@triton.jit
def _log_sigmoid(v):
    """log σ(v) = min(v, 0) - log(1 + e^{-|v|}), finite for every v."""
    return tl.minimum(v, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(v)))


@triton.jit
def _gates(u, at, cols, H, mask, LSTM: tl.constexpr):
    """(a, h̃, the gate pre-activations) at offsets ``at`` (rows of u) + ``cols``:
    minGRU (1 - z, h̃, u_z, u_z); minLSTM (f', h̃, u_f, u_i)."""
    first = C.load_f32(u + at + cols, mask)
    second = C.load_f32(u + at + H + cols, mask)
    if LSTM:
        h_tilde = C.load_f32(u + at + 2 * H + cols, mask)
        return tl.sigmoid(_log_sigmoid(first) - _log_sigmoid(second)), h_tilde, first, second
    return tl.sigmoid(-first), second, first, first


@triton.jit(do_not_specialize=["T"])
def _states(
    u, h0, lens_ptr, probe, y, h_n, T, B, H,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, LSTM: tl.constexpr,
    HAS_PROBE: tl.constexpr, REVERSE: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    col_ok = cols < H
    G = 3 if LSTM else 2
    L = tl.load(lens_ptr + b)
    h = C.load_f32(h0 + b * H + cols, col_ok)
    i = tl.arange(0, BLOCK_T)
    for s0 in range(0, T, BLOCK_T):
        s = s0 + i
        t, valid = C.step_time(s, L, REVERSE)
        row = (t * B + b)[:, None]
        mv = valid[:, None] & col_ok[None, :]
        a, h_tilde, _, _ = _gates(u, row * (G * H), cols[None, :], H, mv, LSTM)
        step_b = (1.0 - a) * h_tilde  # minGRU z ⊙ h̃, minLSTM i' ⊙ h̃
        if HAS_PROBE:
            step_b += C.load_f32(probe + row * H + cols[None, :], mv)
        a = tl.where(mv, a, 1.0)
        step_b = tl.where(mv, step_b, 0.0)
        a_cum, b_cum = tl.associative_scan((a, step_b), 0, _compose)
        states = a_cum * h[None, :] + b_cum
        C.store(y + row * H + cols[None, :], tl.where(mv, states, 0.0),
                (s < T)[:, None] & col_ok[None, :])
        h = tl.sum(tl.where((i == BLOCK_T - 1)[:, None], states, 0.0), axis=0)
    C.store(h_n + b * H + cols, h, col_ok)


@triton.jit(do_not_specialize=["T"])
def _adjoints(
    u, y, h0, dy, dh_n, lens_ptr, du, lam, dh0, T, B, H,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, LSTM: tl.constexpr, REVERSE: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    col_ok = cols < H
    G = 3 if LSTM else 2
    L = tl.load(lens_ptr + b)
    carry = C.load_f32(dh_n + b * H + cols, col_ok)  # λ after the chunk (dh_n past the end)
    i = tl.arange(0, BLOCK_T)
    for c in range(0, tl.cdiv(T, BLOCK_T)):
        s = T - 1 - c * BLOCK_T - i  # row i of the chunk is step s: the chunk reversed
        in_range = (s >= 0)[:, None] & col_ok[None, :]
        t, valid = C.step_time(s, L, REVERSE)
        valid = valid & (s >= 0)  # rows before s = 0 (a last, partial chunk) hold nothing
        row = (t * B + b)[:, None]
        mv = valid[:, None] & col_ok[None, :]
        t_next, valid_next = C.step_time(s + 1, L, REVERSE)
        m_next = (valid_next & (s >= 0))[:, None] & col_ok[None, :]  # rows before s = 0: α = 1
        a_next, _, _, _ = _gates(u, (t_next * B + b)[:, None] * (G * H), cols[None, :], H,
                                 m_next, LSTM)
        alpha = tl.where(m_next, a_next, 1.0)
        g = tl.where(mv, C.load_f32(dy + row * H + cols[None, :], mv), 0.0)
        a_cum, b_cum = tl.associative_scan((alpha, g), 0, _compose)
        lam_s = a_cum * carry[None, :] + b_cum
        carry = tl.sum(tl.where((i == BLOCK_T - 1)[:, None], lam_s, 0.0), axis=0)
        t_prev, _ = C.step_time(s - 1, L, REVERSE)
        m_prev = mv & (s >= 1)[:, None]
        h_prev = tl.where(
            m_prev, C.load_f32(y + (t_prev * B + b)[:, None] * H + cols[None, :], m_prev),
            C.load_f32(h0 + b * H + cols, col_ok)[None, :],
        )
        a, h_tilde, first, second = _gates(u, row * (G * H), cols[None, :], H, mv, LSTM)
        out = du + row * (G * H) + cols[None, :]
        if LSTM:
            e = lam_s * (h_prev - h_tilde) * a * (1.0 - a)
            C.store(out, tl.where(mv, e * tl.sigmoid(-first), 0.0), in_range)
            C.store(out + H, tl.where(mv, -e * tl.sigmoid(-second), 0.0), in_range)
            C.store(out + 2 * H, tl.where(mv, lam_s * (1.0 - a), 0.0), in_range)
        else:
            z = tl.sigmoid(first)
            C.store(out, tl.where(mv, lam_s * (h_tilde - h_prev) * z * a, 0.0), in_range)
            C.store(out + H, tl.where(mv, lam_s * z, 0.0), in_range)
        C.store(lam + row * H + cols[None, :], tl.where(mv, lam_s, 0.0), in_range)
    t0, valid0 = C.step_time(i * 0, L, REVERSE)  # step s = 0, in every row
    m0 = (valid0[:, None] & col_ok[None, :]) & (i == 0)[:, None]
    a0, _, _, _ = _gates(u, (t0 * B + b)[:, None] * (G * H), cols[None, :], H, m0, LSTM)
    a0 = tl.sum(tl.where(m0, a0, 0.0), axis=0) + tl.where(L > 0, 0.0, 1.0)
    C.store(dh0 + b * H + cols, a0 * carry, col_ok)


class GpuMin(MinByRecurrence):
    """:class:`~rnnlab.backends.contract.MinKernels` with Triton recurrences."""

    def _launch(self, H: int, B: int, parallel: bool) -> tuple[tuple[int, int], dict]:
        block_h = min(BLOCK_H, C.pad(H))
        grid = (B, triton.cdiv(H, block_h))
        return grid, {"BLOCK_T": BLOCK_T if parallel else 1, "BLOCK_H": block_h,
                      "LSTM": self.family == "minlstm"}

    def states(self, u: Tensor, h0: Tensor, lengths, h_probe, reverse, parallel):
        T, B, H = u.shape[0], u.shape[1], h0.shape[-1]
        y, h_n = u.new_empty(T, B, H), u.new_empty(B, H)
        lens = C.full_lengths(lengths, T, B, u.device)
        grid, flags = self._launch(H, B, parallel)
        _states[grid](u.contiguous(), h0.contiguous(), lens,
                      h_probe.contiguous() if h_probe is not None else y, y, h_n, T, B, H,
                      HAS_PROBE=h_probe is not None, REVERSE=reverse, **flags)
        return y, h_n

    def adjoints(self, u: Tensor, y: Tensor, h0: Tensor, dy: Tensor, dh_n: Tensor, lengths,
                 reverse, parallel):
        T, B, H = u.shape[0], u.shape[1], h0.shape[-1]
        du, dh0, lam = torch.empty_like(u), h0.new_empty(B, H), y.new_empty(T, B, H)
        lens = C.full_lengths(lengths, T, B, u.device)
        grid, flags = self._launch(H, B, parallel)
        _adjoints[grid](u.contiguous(), y.contiguous(), h0.contiguous(), dy.contiguous(),
                        dh_n.contiguous(), lens, du, lam, dh0, T, B, H, REVERSE=reverse,
                        **flags)
        return du, dh0, lam

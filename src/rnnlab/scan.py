"""The linear recurrence h_t = a_t ⊙ h_{t-1} + b_t over a whole sequence, in torch ops.

Two forms that give the same states: ``parallel=True``, an even-odd (recursive-doubling)
scan, and ``parallel=False``, the plain loop over steps. Both run on any device.

**Why this scan, and not the log-space one.** The min cells have a_t ∈ (0, 1) and b_t
of any sign. Heinsen's (2023) log-space scan, h_t = e^{A_t} Σ_{s≤t} e^{log b_s - A_s} with
A_t = Σ_{r≤t} log a_r (b split into its positive and negative parts), needs cumulative
sums of log a_t that grow without bound in T; each h_t then comes out of a sum of
terms of size |A_t|, and float32 loses eps·|A_t| of relative accuracy (at T = 4096
with gates near 0.5 that is |A_t| ≈ 2800, an error of ~3e-4), plus cancellation
between the two signed parts. The even-odd scan instead composes pairs of steps,
(a_2, b_2) ∘ (a_1, b_1) = (a_2 a_1, a_2 b_1 + b_2): only products of numbers in (0, 1)
and sums of the same terms the loop sums, no exp, log or division, so nothing can
overflow, and each h_t is a tree sum of the loop's terms, log2(T) levels deep. Its
float32 error at T = 4096 is that of the loop (measured by ``benchmarks/min_scan.py``).
Work is O(T) (T/2 + T/4 + … compositions) in ⌈log2 T⌉ levels of whole-tensor ops, and
the extra memory about twice the states' (T/2 + T/4 + … pairs, and the states of each level).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_scan"]


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, parallel: bool = True) -> Tensor:
    """Every state of h_t = a_t ⊙ h_{t-1} + b_t, t = 0 … T-1, from h_{-1} = h0.

    a, b: (T, ...) with h0 of shape (...). Returns the states (T, ...), a new tensor.
    """
    if not parallel:
        states = torch.empty_like(b)
        h = h0
        for t in range(b.shape[0]):
            h = torch.addcmul(b[t], a[t], h)
            states[t] = h
        return states
    b = b.clone()
    b[0].addcmul_(a[0], h0)  # fold the initial state into the first step
    return _even_odd_scan(a, b)


def _even_odd_scan(a: Tensor, b: Tensor) -> Tensor:
    """States of h_t = a_t ⊙ h_{t-1} + b_t from h_{-1} = 0, by recursive doubling.

    Steps 2j and 2j+1 compose into one step (a_{2j+1} a_{2j}, a_{2j+1} b_{2j} + b_{2j+1})
    whose state is h_{2j+1}; the half-length recurrence of those pairs gives every odd
    state, and each even state is one step on from the odd state before it.
    """
    T = b.shape[0]
    if T == 1:
        return b.clone()
    n = T // 2
    a_even, a_odd = a[0 : 2 * n : 2], a[1 : 2 * n : 2]
    b_even, b_odd = b[0 : 2 * n : 2], b[1 : 2 * n : 2]
    odd_states = _even_odd_scan(a_odd * a_even, torch.addcmul(b_odd, a_odd, b_even))
    states = torch.empty_like(b)
    states[1 : 2 * n : 2] = odd_states
    states[0] = b[0]
    if T > 2:  # h_{2j} = a_{2j} h_{2j-1} + b_{2j}, j ≥ 1
        states[2::2] = torch.addcmul(b[2::2], a[2::2], odd_states[: (T - 1) // 2])
    return states

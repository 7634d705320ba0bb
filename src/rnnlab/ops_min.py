"""The min cells' custom ops: ``rnnlab::mingru`` and ``rnnlab::minlstm`` (Feng et al. 2024).

Each op runs **one direction of one layer over the whole sequence** (time-major), as
the classic ops of :mod:`rnnlab.ops` do, and returns (y, h_n, u): the outputs, the final
state and the gate pre-activations u = W_ih x_t + b_ih (zero at padding steps), which
are what backward needs (and what recording shows). Signatures::

    mingru (x, h0, w_ih (2H, I), b_ih?, lengths?, h_probe?, reverse, parallel) -> y, h_n, u (T,B,2H)
    minlstm(x, h0, w_ih (3H, I), b_ih?, lengths?, h_probe?, reverse, parallel) -> y, h_n, u (T,B,3H)

The gates read x_t only, so every step is the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t,
a_t ∈ (0, 1) and b_t pointwise in u_t (:mod:`rnnlab.backends._min` writes a, b and the
backward's formulas once). One GEMM projects every step's input; the backend's
:class:`~rnnlab.backends.contract.MinKernels` then solves the recurrence, forward and
backwards (the ops ``rnnlab::mingru_backward``, ``rnnlab::minlstm_backward``: the adjoint
λ_t = ∂L/∂h_t obeys λ_t = g_t + a_{t+1} ⊙ λ_{t+1}): the portable and gpu backends in
torch ops (:func:`rnnlab.scan.linear_scan`, the parallel scan when ``parallel`` else the
loop over steps), the cpu backend in one compiled loop per direction
(:mod:`rnnlab.backends.cpu.min`).

``h_probe`` (T, B, H) is added to h_t after every valid step (zeros change nothing; its
gradient is the total ∂L/∂h_t), as for the classic ops. A padding step t ≥ lengths[b]
keeps the state (a = 1, b = 0) and outputs 0; its input is never read.

Double backward: inside a recorded backward (``create_graph=True``) the formulas
recompute the forward with differentiable torch ops from the saved inputs and return
``torch.autograd.grad(..., create_graph=True)`` of it, as the classic ops do.
"""

from __future__ import annotations

from torch import Tensor

from rnnlab.backends._min import GATE_BLOCKS, TorchOpsMin
from rnnlab.backends.contract import MinForward, MinGrads, MinSaved, MinWeights, Sequence
from rnnlab.ops import _backend, _define_family

__all__ = ["GATE_BLOCKS", "mingru", "mingru_backward", "minlstm", "minlstm_backward"]


def _entry(
    x: Tensor, h0: Tensor, w_ih: Tensor, b_ih: Tensor | None, lengths: Tensor | None,
    h_probe: Tensor | None, reverse: bool, parallel: bool,
):
    """A min cell over a sequence: returns y (T,B,H), h_n (B,H), u (T,B,G·H)."""
    return MinWeights(w_ih, b_ih), Sequence(x, lengths, reverse), h0, h_probe, parallel


def _backward_entry(
    dy: Tensor, dh_n: Tensor, x: Tensor, h0: Tensor, w_ih: Tensor, y: Tensor, u: Tensor,
    lengths: Tensor | None, reverse: bool, parallel: bool, need_dh: bool,
    need_dx: bool,
):
    w, seq = MinWeights(w_ih, None), Sequence(x, lengths, reverse)
    return w, seq, h0, MinSaved(y, u), dy, dh_n, parallel, need_dh, need_dx


def _shapes(named) -> tuple[tuple, ...]:
    (T, B), H = named["x"].shape[:2], named["h0"].shape[-1]
    return (T, B, H), (B, H), (T, B, named["w_ih"].shape[0])  # y, h_n, u


def _define(family: str):
    """rnnlab::<family> and rnnlab::<family>_backward, registered as the classic ops are
    (:func:`rnnlab.ops._define_family`); double backward differentiates the torch-ops form."""
    differentiable = TorchOpsMin(family)
    return _define_family(
        family, lambda x: getattr(_backend(x), family), _entry, _backward_entry,
        outputs=MinForward, grads=MinGrads, shapes=_shapes,
        outputs_of=lambda *bundles: differentiable.forward(*bundles)[:2], infer=False,
    )


mingru, mingru_backward = _define("mingru")
minlstm, minlstm_backward = _define("minlstm")

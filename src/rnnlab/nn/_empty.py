"""Outputs of a call with nothing to compute: a batch of 0 sequences, a cell of
hidden_size 0. torch.nn returns correctly shaped empty tensors for these; so does rnnlab,
without reaching the ops (whose kernels need at least one row and one unit)."""

from __future__ import annotations

import torch
from torch import Tensor


def empty_outputs(shapes: list[tuple[int, ...]], sources: list[Tensor]) -> list[Tensor]:
    """Zero-element tensors of ``shapes`` (dtype and device of ``sources[0]``), attached to
    autograd: every source that requires grad (input, states, parameters) receives a
    gradient of zeros from a backward through them, as from torch.nn, so that no
    parameter is left with ``grad None`` (DDP waits for every one)."""
    outputs = [sources[0].new_zeros(shape) for shape in shapes]
    needing = [s for s in sources if s.requires_grad]
    if needing and torch.is_grad_enabled():
        # An empty slice's sum is 0 whatever the tensor holds; its gradient is zeros.
        anchor = torch.stack([s.reshape(-1)[:0].sum() for s in needing]).sum()
        outputs = [out + anchor for out in outputs]
    return outputs

"""A training step on the cpu backend allocates what its shapes need and no more.

Counted, not timed: a dispatch mode adds up the bytes of every new storage an operation
returns while a step runs (keeping each alive, so no address is reused and counted
twice). The bounds are written from the shapes: the forward keeps y and the saved
activations; the backward of a layer makes dy, dx, the state and parameter gradients —
not a zero gradient for each saved activation (gates, cell states: these outputs are
not differentiable); inside the backend, one block of time steps of pre-activation
gradients exists at a time. Numba's own scratch arrays (a few rows per part) are not
torch storages and are not counted."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import rnnlab
import rnnlab.nn
from rnnlab.backends import cpu
from rnnlab.backends.contract import (
    GRUSaved,
    GRUWeights,
    LSTMSaved,
    LSTMState,
    LSTMWeights,
    RNNSaved,
    RNNWeights,
    Sequence,
)
from rnnlab.backends.cpu._common import time_blocks

T, B, I, H = 128, 32, 4, 16  # four time blocks of 32 steps at B = 32
SAVED = {"rnn": H, "lstm": 5 * H, "gru": 4 * H}  # a; gates (4H) and c; gates [r, z, n, hn]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
BYTES = 4  # float32


class NewStorageBytes(TorchDispatchMode):
    """Bytes of the storages that operations return and none of their arguments holds."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self._seen: set[int] = set()
        self._kept: list[Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        held = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                if isinstance(t, Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, Tensor):
                continue
            storage = t.untyped_storage()
            if storage.data_ptr() not in held | self._seen:
                self._seen.add(storage.data_ptr())
                self._kept.append(t)
                self.bytes += storage.nbytes()
        return out


def _layer(family: str) -> rnnlab.nn.RNNBase:
    torch.manual_seed(0)
    return {"rnn": rnnlab.nn.RNN, "lstm": rnnlab.nn.LSTM, "gru": rnnlab.nn.GRU}[family](I, H)


def _parameter_bytes(layer: torch.nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters()) * BYTES


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
def test_layer_training_step_allocates_outputs_saved_activations_and_gradients(family):
    layer = _layer(family)
    x = torch.randn(T, B, I)
    states = 8 * B * H * BYTES  # initial states, final states, their gradients, stacks
    with rnnlab.use_backend("cpu"):
        with NewStorageBytes() as forward:
            y, _ = layer(x)
        loss = y.sum()
        with NewStorageBytes() as backward:
            loss.backward()
    assert forward.bytes <= T * B * (H + SAVED[family]) * BYTES + states, (
        f"forward allocated {forward.bytes} bytes: more than y and the saved activations")
    gradients = T * B * (H + I) * BYTES  # dy (made contiguous) and dx
    assert backward.bytes <= gradients + 2 * _parameter_bytes(layer) + states, (
        f"backward allocated {backward.bytes} bytes: more than dy, dx and the parameter and "
        f"state gradients (a zero gradient materialised for a saved activation?)")


def _backend_backward(family: str, w_ih, w_hh, seq, h0, y, saved, dy):
    if family == "lstm":
        w = LSTMWeights(w_ih, w_hh, None, None, None)
        zeros = LSTMState(torch.zeros_like(h0), torch.zeros_like(h0))
        return lambda: cpu.KERNELS.lstm.backward(w, seq, LSTMState(h0, h0), saved, dy, zeros,
                                                 False)
    kernels = cpu.KERNELS.gru if family == "gru" else cpu.KERNELS.rnn
    weights = GRUWeights if family == "gru" else RNNWeights
    w = weights(w_ih, w_hh, None, None)
    return lambda: kernels.backward(w, seq, h0, saved, dy, torch.zeros_like(h0), True, False)


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
def test_backend_backward_holds_one_time_block_of_gradients(family):
    g = torch.Generator().manual_seed(1)
    G = GATES[family] * H
    x, h0, dy = torch.randn(T, B, I, generator=g), torch.zeros(B, H), torch.randn(T, B, H)
    w_ih, w_hh = torch.randn(G, I, generator=g) * 0.3, torch.randn(G, H, generator=g) * 0.3
    seq = Sequence(x, None, False)
    if family == "lstm":
        out = cpu.KERNELS.lstm.forward(LSTMWeights(w_ih, w_hh, None, None, None), seq,
                                       LSTMState(h0, h0), None)
        y, saved = out.y, LSTMSaved(out.y, out.gates, out.c)
    elif family == "gru":
        out = cpu.KERNELS.gru.forward(GRUWeights(w_ih, w_hh, None, None), seq, h0, None, True)
        y, saved = out.y, GRUSaved(out.y, out.gates)
    else:
        out = cpu.KERNELS.rnn.forward(RNNWeights(w_ih, w_hh, None, None), seq, h0, None, False)
        y, saved = out.y, RNNSaved(out.y, out.a)
    blocks = time_blocks(T, B, False)
    step = max(t1 - t0 for t0, t1 in blocks)
    block = (2 if family == "gru" else 1) * step * B * G * BYTES  # GRU: input and recurrent
    per_block = len(blocks) * 2 * (G * (I + H) + G) * BYTES  # weight-gradient partial sums
    bound = T * B * I * BYTES + block + per_block + (G * (I + H + 2) + 4 * B * G) * BYTES
    with NewStorageBytes() as backward:
        _backend_backward(family, w_ih, w_hh, seq, h0, y, saved, dy)()
    assert len(blocks) == 4
    assert backward.bytes <= bound, (
        f"backward allocated {backward.bytes} bytes, bound {bound}: more than one time block "
        f"of pre-activation gradients at a time?")

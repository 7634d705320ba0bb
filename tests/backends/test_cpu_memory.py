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
    gradients = T * B * H * BYTES  # dy (made contiguous); x needs no gradient: no dx
    assert backward.bytes <= gradients + 2 * _parameter_bytes(layer) + states, (
        f"backward allocated {backward.bytes} bytes: more than dy and the parameter and "
        f"state gradients (a zero gradient materialised for a saved activation, or a dx "
        f"that was not asked for?)")


def _backend_backward(family: str, w_ih, w_hh, seq, h0, y, saved, dy):
    if family == "lstm":
        w = LSTMWeights(w_ih, w_hh, None, None, None)
        zeros = LSTMState(torch.zeros_like(h0), torch.zeros_like(h0))
        return lambda: cpu.KERNELS.lstm.backward(w, seq, LSTMState(h0, h0), saved, dy, zeros,
                                                 False, True)
    kernels = cpu.KERNELS.gru if family == "gru" else cpu.KERNELS.rnn
    weights = GRUWeights if family == "gru" else RNNWeights
    w = weights(w_ih, w_hh, None, None)
    return lambda: kernels.backward(w, seq, h0, saved, dy, torch.zeros_like(h0), True, False, True)


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
        y, saved = out.y, RNNSaved(out.y, None)
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


def _saved_bytes(layer: torch.nn.Module, x: Tensor) -> int:
    """Bytes of the storages autograd keeps for the backward of ``layer(x)`` (each storage
    once, the parameters not counted)."""
    kept: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    parameters = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    return sum(n for ptr, n in kept.items() if ptr not in parameters)


@pytest.mark.parametrize("stack", [{}, {"num_layers": 2, "bidirectional": True}],
                         ids=["one layer", "2-layer bidirectional"])
@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
def test_what_autograd_keeps_is_no_more_than_torch_nn_keeps(family, stack):
    """The oracle from outside: torch.nn's own layer, same shapes. The RNN keeps y alone
    (its backward takes tanh' from y, as torch's tanh does), not also its pre-activations."""
    cls = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[family]
    torch.manual_seed(0)
    ours, theirs = getattr(rnnlab.nn, cls)(I, H, **stack), getattr(torch.nn, cls)(I, H, **stack)
    x = torch.randn(T, B, I)
    layers = stack.get("num_layers", 1) * (2 if stack.get("bidirectional") else 1)
    states = 2 * layers * B * H * BYTES  # initial states (h0, c0) that rnnlab makes and keeps
    with rnnlab.use_backend("cpu"):
        kept = _saved_bytes(ours, x)
    torch_kept = _saved_bytes(theirs, x)
    assert kept <= torch_kept + states, (
        f"{cls} keeps {kept} bytes for backward, torch.nn {torch_kept}")

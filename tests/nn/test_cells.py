"""Cells vs torch.nn cells, a layer == a loop of its cell, and the reverse direction ==
the forward direction on length-aware flipped input (oracle 4)."""

from __future__ import annotations

import pytest
import torch

import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close, torch_rnn_blocked

CELLS = {
    "rnn_tanh": (torch.nn.RNNCell, rnn.RNNCell, {}),
    "rnn_relu": (torch.nn.RNNCell, rnn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (torch.nn.LSTMCell, rnn.LSTMCell, {}),
    "gru": (torch.nn.GRUCell, rnn.GRUCell, {}),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_matches_torch_nn(name, with_state, batched, bias, dtype):
    torch_cls, our_cls, kw = CELLS[name]
    torch.manual_seed(0)
    theirs = torch_cls(3, 5, bias=bias, dtype=dtype, **kw)
    ours = our_cls(3, 5, bias=bias, dtype=dtype, **kw)
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    shape = (4, 3) if batched else (3,)
    state_shape = (4, 5) if batched else (5,)
    x = torch.randn(shape, dtype=dtype)
    n_states = 2 if name == "lstm" else 1
    states = [torch.randn(state_shape, dtype=dtype) for _ in range(n_states)]
    inputs_t = [t.clone().requires_grad_(True) for t in [x, *states]]
    inputs_o = [t.clone().requires_grad_(True) for t in [x, *states]]

    def run(cell, inputs):
        hx = None
        if with_state:
            hx = tuple(inputs[1:]) if name == "lstm" else inputs[1]
        out = cell(inputs[0], hx)
        return list(out) if name == "lstm" else [out]

    outs_t = run(theirs, inputs_t)
    with torch_rnn_blocked():
        outs_o = run(ours, inputs_o)
    for a, b in zip(outs_o, outs_t, strict=True):
        assert_rel_close(a, b, OUT_TOL[dtype], "cell output")
    w = [torch.randn_like(o) for o in outs_t]
    sum((wi * o).sum() for wi, o in zip(w, outs_t, strict=True)).backward()
    with torch_rnn_blocked():
        sum((wi * o).sum() for wi, o in zip(w, outs_o, strict=True)).backward()
    for k, (a, b) in enumerate(zip(inputs_o, inputs_t, strict=True)):
        if k == 0 or with_state:
            assert_rel_close(a.grad, b.grad, GRAD_TOL[dtype], f"d input {k}")
    params_o = dict(ours.named_parameters())
    for pname, p in theirs.named_parameters():
        assert_rel_close(params_o[pname].grad, p.grad, GRAD_TOL[dtype], f"d {pname}")


LAYERS = {
    "rnn": (rnn.RNN, rnn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rnn.LSTM, rnn.LSTMCell, {}),
    "gru": (rnn.GRU, rnn.GRUCell, {}),
    "gru_reset_before": (rnn.GRU, rnn.GRUCell, {"reset_after": False}),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_equals_loop_of_its_cell(name):
    layer_cls, cell_cls, kw = LAYERS[name]
    torch.manual_seed(1)
    layer = layer_cls(3, 4, dtype=torch.float64, **kw)
    cell_kw = {"nonlinearity": kw["nonlinearity"]} if "nonlinearity" in kw else dict(kw)
    cell = cell_cls(3, 4, dtype=torch.float64, **cell_kw)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    y, h_n = layer(x)
    state = None
    steps = []
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        steps.append(state[0] if name == "lstm" else state)
    assert_rel_close(y, torch.stack(steps), 1e-12, "layer vs cell loop")
    last = h_n[0][0] if name == "lstm" else h_n[0]
    assert_rel_close(last, steps[-1], 1e-12, "final state")


def _flip_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sample's first lengths[b] steps of a (T, B, F) tensor in place order."""
    out = torch.zeros_like(x)
    for b, n in enumerate(lengths.tolist()):
        out[:n, b] = x[:n, b].flip(0)
    return out


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_reverse_direction_equals_forward_on_flipped_input(name):
    layer_cls, _, kw = LAYERS[name]
    torch.manual_seed(2)
    bi = layer_cls(3, 4, bidirectional=True, dtype=torch.float64, **kw)
    uni = layer_cls(3, 4, dtype=torch.float64, **kw)
    uni.load_state_dict({k.replace("_reverse", ""): v for k, v in bi.state_dict().items()
                         if k.endswith("_reverse")})
    x = torch.randn(7, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 1])
    y_bi, h_bi = bi(x, lengths=lengths)
    y_uni, h_uni = uni(_flip_valid(x, lengths), lengths=lengths)
    backward_half = y_bi[..., 4:]
    assert_rel_close(backward_half, _flip_valid(y_uni, lengths), 1e-12, "reverse outputs")
    h_back = h_bi[0][1] if name == "lstm" else h_bi[1]
    h_ref = h_uni[0][0] if name == "lstm" else h_uni[0]
    assert_rel_close(h_back, h_ref, 1e-12, "reverse final state")

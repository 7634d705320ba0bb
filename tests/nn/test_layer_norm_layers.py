"""LSTM, GRU and their cells with layer_norm=True against the reference stack (outputs,
final states, every parameter's gradient) on chosen configurations; the cell as one step
of the layer; Stream; recording; parameters; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import reference

STEMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "gamma_ih", "gamma_hh", "gamma_c",
         "beta_c")
REFERENCE_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "gamma_ih", "gamma_hh", "gamma_c", "beta_c")


def _reference_direction(layer, inp, h0, c0, weights, lengths, reverse):
    """One direction by the reference: y, h_n, c_n (None for the GRU), backward(dy, dh, dc)."""
    if layer.family == "gru":
        weights = {k: v for k, v in weights.items() if k not in ("gamma_c", "beta_c")}
        y, h, cache = reference.lngru_forward(inp, h0, **weights, lengths=lengths,
                                              reverse=reverse)
        return y, h, None, lambda dy, dh, dc: reference.lngru_backward(dy, dh, cache)
    y, (h, c), cache = reference.lnlstm_forward(inp, h0, c0, **weights, lengths=lengths,
                                                reverse=reverse)
    return y, h, c, lambda dy, dh, dc: reference.lnlstm_backward(dy, dh, dc, cache)


def _reference_stack(layer, x, h0, c0, lengths, dy, dh_n, dc_n):
    """y, h_n, c_n and every parameter's gradient by the reference, layer by layer."""
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    params = {k: v.detach().double().numpy() for k, v in layer.named_parameters()}
    caches, h_n, c_n, inp = [], [], [], x
    for k in range(L):
        outs = []
        for d in range(D):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            weights = {r: params.get(s + suffix)
                       for s, r in zip(STEMS, REFERENCE_NAMES, strict=True)}
            y, h, c, backward = _reference_direction(
                layer, inp, h0[k * D + d], c0[k * D + d], weights, lengths, bool(d)
            )
            outs.append(y)
            caches.append((suffix, backward))
            h_n.append(h)
            c_n.append(c)
        inp = np.concatenate(outs, axis=2)
    grads, d_out = {}, dy
    for k in reversed(range(L)):
        d_in = 0.0
        for d in range(D):
            suffix, backward = caches[k * D + d]
            g = backward(d_out[..., d * H:(d + 1) * H], dh_n[k * D + d], dc_n[k * D + d])
            d_in = d_in + g["x"]
            grads.update({s + suffix: g[r] for s, r in zip(STEMS, REFERENCE_NAMES, strict=True)
                          if g.get(r) is not None})
        d_out = d_in
    return inp, np.stack(h_n), (np.stack(c_n) if layer.family == "lstm" else None), grads


CONFIGS = [  # each covers what the others do not
    {"I": 3, "H": 4, "T": 5, "B": 3, "num_layers": 2, "bidirectional": True, "bias": True,
     "batch_first": True, "lengths": [5, 2, 1]},
    {"I": 2, "H": 3, "T": 4, "B": 2, "num_layers": 2, "bidirectional": False, "bias": False,
     "batch_first": False, "lengths": None},
    {"I": 1, "H": 1, "T": 3, "B": 2, "num_layers": 1, "bidirectional": True, "bias": False,
     "batch_first": False, "lengths": [1, 3]},
]


@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("seed", range(len(CONFIGS)))
def test_layer_matches_reference_stack(seed, dtype, family):
    c = CONFIGS[seed]
    torch.manual_seed(seed)
    layer = (rnn.LSTM if family == "lstm" else rnn.GRU)(
        c["I"], c["H"], c["num_layers"], c["bias"], c["batch_first"],
        bidirectional=c["bidirectional"], dtype=dtype, layer_norm=True,
    )
    with torch.no_grad():  # gains and β away from their initial 1 and 0
        for name, p in layer.named_parameters():
            if name.startswith(("gamma", "beta")):
                p.add_(0.3 * torch.randn_like(p))
    T, B, H = c["T"], c["B"], c["H"]
    LD = c["num_layers"] * layer.num_directions
    rs = np.random.default_rng(seed)
    x = rs.normal(size=(T, B, c["I"]))
    h0, c0 = rs.normal(size=(LD, B, H)), rs.normal(size=(LD, B, H))
    dy, dh_n, dc_n = (rs.normal(size=s) for s in ((T, B, layer.num_directions * H), (LD, B, H),
                                                  (LD, B, H)))
    y_ref, h_ref, c_ref, grads_ref = _reference_stack(layer, x, h0, c0, c["lengths"], dy, dh_n,
                                                      dc_n)

    def as_input(a):
        t = torch.tensor(a, dtype=dtype)
        return t.transpose(0, 1) if c["batch_first"] else t

    lengths = None if c["lengths"] is None else torch.tensor(c["lengths"])
    state = torch.tensor(h0, dtype=dtype)
    if family == "lstm":
        y, (h, cell) = layer(as_input(x), (state, torch.tensor(c0, dtype=dtype)), lengths=lengths)
    else:
        y, h = layer(as_input(x), state, lengths=lengths)
    tol, gtol = OUT_TOL[dtype], GRAD_TOL[dtype]
    y = y.transpose(0, 1) if c["batch_first"] else y
    assert_rel_close(y, torch.from_numpy(y_ref), tol, "y")
    assert_rel_close(h, torch.from_numpy(h_ref), tol, "h_n")
    loss = (y * torch.tensor(dy, dtype=dtype)).sum() + (h * torch.tensor(dh_n, dtype=dtype)).sum()
    if family == "lstm":
        assert_rel_close(cell, torch.from_numpy(c_ref), tol, "c_n")
        loss = loss + (cell * torch.tensor(dc_n, dtype=dtype)).sum()
    loss.backward()
    assert set(grads_ref) == {name for name, _ in layer.named_parameters()}
    for name, p in layer.named_parameters():
        assert_rel_close(p.grad, torch.from_numpy(grads_ref[name]), gtol, name)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_cell_is_one_step_of_the_layer_and_stream_equals_the_layer(family):
    torch.manual_seed(0)
    Layer, Cell = (rnn.LSTM, rnn.LSTMCell) if family == "lstm" else (rnn.GRU, rnn.GRUCell)
    layer = Layer(3, 4, num_layers=2, layer_norm=True, dtype=torch.float64)
    cell = Cell(3, 4, layer_norm=True, dtype=torch.float64)
    with torch.no_grad():
        for name, p in cell.named_parameters():
            p.copy_(getattr(layer, name + "_l0") + 0.2 * torch.randn_like(p))
            getattr(layer, name + "_l0").copy_(p)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    first = Layer(3, 4, layer_norm=True, dtype=torch.float64)
    first.load_state_dict({k: v for k, v in layer.state_dict().items() if k.endswith("_l0")})
    h0, c0 = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    if family == "lstm":
        y, (_, c) = first(x, (h0[None], c0[None]))
        state = (h0, c0)
    else:
        y, _ = first(x, h0[None])
        state = h0
    for t in range(5):
        state = cell(x[t], state)
        assert_rel_close(state[0] if family == "lstm" else state, y[t], 1e-12, f"cell step {t}")
    if family == "lstm":
        assert_rel_close(state[1], c[0], 1e-12, "cell state")

    stream = rnn.Stream(layer.eval())
    with torch.no_grad():
        want, _ = layer(x[:, 0])
    got = torch.cat([stream.step(x[0, 0])[None], stream.step(x[1:, 0])])
    assert_rel_close(got, want, 1e-12, "stream")


def test_record_gates_and_gradients():
    torch.manual_seed(1)
    layer = rnn.LSTM(2, 3, layer_norm=True, bias=False, dtype=torch.float64)
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    with rnn.record(layer) as rec:
        y, _ = layer(x)
        y.square().sum().backward()
    params = {k: v.detach().numpy() for k, v in layer.named_parameters()}
    names = {"weight_ih_l0": "w_ih", "weight_hh_l0": "w_hh", "gamma_ih_l0": "gamma_ih",
             "gamma_hh_l0": "gamma_hh", "gamma_c_l0": "gamma_c"}
    zeros = np.zeros((2, 3))
    y_ref, _, cache = reference.lnlstm_forward(
        x.numpy(), zeros, zeros, **{names[k]: v for k, v in params.items()}
    )
    assert set(rec.gates["l0"]) == {"i", "f", "g", "o", "c"}
    for name, value in cache.gates.items():
        assert_rel_close(rec.gates["l0"][name], torch.from_numpy(value), 1e-12, name)
    dh = reference.lnlstm_backward(2 * y_ref, None, None, cache)["h"]
    assert_rel_close(rec.hidden_grads["l0"], torch.from_numpy(dh), 1e-12, "dL/dh_t")


def test_parameters_initialisation_and_errors():
    torch.manual_seed(3)
    plain = rnn.LSTM(2, 3, bidirectional=True)
    torch.manual_seed(3)
    layer = rnn.LSTM(2, 3, bidirectional=True, layer_norm=True)
    assert [k for k in layer.state_dict() if k.endswith("_l0_reverse")] == [
        s + "_l0_reverse" for s in STEMS
    ]
    for name, value in plain.state_dict().items():  # the same draws as without layer_norm
        assert torch.equal(layer.state_dict()[name], value), name
    assert torch.equal(layer.gamma_ih_l0, torch.ones(12)) and layer.gamma_c_l0.shape == (3,)
    assert torch.equal(layer.beta_c_l0_reverse, torch.zeros(3))
    assert "layer_norm=True" in repr(layer) and "layer_norm=True" in repr(
        rnn.LSTMCell(2, 3, layer_norm=True)
    )
    assert [k for k, _ in rnn.LSTMCell(2, 3, bias=False, layer_norm=True).named_parameters()] == [
        "weight_ih", "weight_hh", "gamma_ih", "gamma_hh", "gamma_c"
    ]
    with pytest.raises(ValueError, match=r"layer_norm=True does not support proj_size > 0"):
        rnn.LSTM(2, 3, proj_size=2, layer_norm=True)
    with pytest.raises(TypeError, match="layer_norm must be a bool"):
        rnn.LSTMCell(2, 3, layer_norm=1)
    with pytest.raises(ValueError, match="layer_norm=True needs reset_after=True"):
        rnn.GRU(2, 3, layer_norm=True, reset_after=False)
    assert [k for k in rnn.GRU(2, 3, layer_norm=True).state_dict()][-2:] == [
        "gamma_ih_l0", "gamma_hh_l0"
    ]

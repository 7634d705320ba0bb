"""Every cell rnnlab compare trains, traced: h is the layer's own output, every layer's
state is the one it hands on, chunks carry the state exactly, and the recorded gates
are the cell's (checked against the min cells' recurrences, which are written in them)."""

import numpy as np
import pytest
import torch

from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab.explore import trace as trace_module
from rnnlab.explore.connectivity import connectivity
from rnnlab.explore.trace import QUANTITIES, trace
from rnnlab.tasks import ModelConfig, SequenceModel

# cell, regulariser options: the new families and the classic ones under each regulariser
CASES = [("lnlstm", {}), ("lngru", {}), ("mingru", {}), ("minlstm", {}),
         ("lstm", {"zoneout": 0.3}), ("gru", {"zoneout": 0.4}),
         ("lstm", {"recurrent_dropout": 0.5, "weight_drop": 0.5}),
         ("gru", {"recurrent_dropout": 0.5}), ("lngru", {"weight_drop": 0.3})]
H, T = 5, 23
TOL = OUT_TOL[torch.float32]  # the recorded (differentiable) ops against the inference ops


def _model(cell, options, bidirectional):
    torch.manual_seed(1)
    config = ModelConfig(cell=cell, input_size=3, hidden_size=H, output_size=2, num_layers=2,
                         bidirectional=bidirectional, **options)
    return SequenceModel(config).eval(), torch.randn(1, T, 3)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "both-ways"])
@pytest.mark.parametrize(("cell", "options"), CASES,
                         ids=[c + "".join(f"-{k}" for k in o) for c, o in CASES])
def test_h_is_the_layer_output_and_every_layer_hands_on_its_state(cell, options,
                                                                  bidirectional, monkeypatch):
    model, x = _model(cell, options, bidirectional)
    monkeypatch.setattr(trace_module, "CHUNK", 7)  # one-way: 4 chunks, the state carried
    layers = trace(model, x)
    D = 2 if bidirectional else 1
    assert [lt.key for lt in layers] == ["l0", "l1"] + (["l0_reverse", "l1_reverse"] * (D - 1))
    with torch.no_grad():
        out, state = model.rnn(x)  # the whole sequence in one call
    states = state if isinstance(state, tuple) else (state,)
    for lt in layers:
        assert tuple(lt.values) == QUANTITIES[cell]
        assert len(lt.state) == len(states) == (2 if "c" in lt.values else 1)
        assert all(v.shape == (T, H) and v.dtype == np.float32 for v in lt.values.values())
    top = [layers[1]] + ([layers[3]] if bidirectional else [])
    assert_rel_close(np.concatenate([lt.values["h"] for lt in top], axis=1), out[0], TOL,
                     "h of the top layer")
    for k, lt in enumerate(layers):  # the state after the direction's last step
        layer, direction = (k, 0) if k < 2 else (k - 2, 1)
        last = 0 if direction else -1
        for s, final in zip(lt.state, states, strict=True):
            assert_rel_close(s[last], final[layer * D + direction, 0], TOL, lt.key)
    monkeypatch.setattr(trace_module, "CHUNK", T)
    whole = trace(model, x)
    for a, b in zip(layers, whole, strict=True):
        for q in a.values:
            assert_rel_close(a.values[q], b.values[q], TOL, f"{a.key} {q} in chunks")


@pytest.mark.parametrize(("cell", "options"), CASES,
                         ids=[c + "".join(f"-{k}" for k in o) for c, o in CASES])
def test_connectivity_from_the_traced_state_is_full_autograd(cell, options):
    """Each window starts from the traced state (h, and c for the LSTMs) entering it: its
    gradients equal those of the whole sequence's autograd."""
    model, x = _model(cell, options, bidirectional=False)
    W = 6
    conn = connectivity(model, x, trace(model, x), classes=False, steps=T, window=W)
    for t in (2, 13, T - 1):
        xg = x.clone().requires_grad_(True)
        out, _ = model.rnn(xg)
        (g,) = torch.autograd.grad(model.head(out[0, t]).sum(), xg)
        lo = max(0, t - W + 1)
        assert_rel_close(conn[t, W - (t - lo + 1):], g[0, lo:t + 1].norm(dim=-1),
                         GRAD_TOL[torch.float32], f"step {t}")
        assert np.all(conn[t, :W - (t - lo + 1)] == 0)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_the_min_cells_gates_give_their_h(cell):
    """The recorded gates name the steps' own terms: minGRU h_t = (1 − z_t) ⊙ h_{t−1} +
    z_t ⊙ h̃_t, minLSTM h_t = f'_t ⊙ h_{t−1} + (1 − f'_t) ⊙ h̃_t (reference/min*.py)."""
    model, x = _model(cell, {}, bidirectional=False)
    for lt in trace(model, x):
        v = lt.values
        keep = 1.0 - v["z"] if cell == "mingru" else v["f_norm"]
        h_prev = np.vstack([np.zeros((1, H), np.float32), v["h"][:-1]])
        assert_rel_close(keep * h_prev + (1.0 - keep) * v["h_tilde"], v["h"], TOL, lt.key)
        if cell == "minlstm":
            assert_rel_close(v["f"] / (v["f"] + v["i"]), v["f_norm"], TOL, "f'")

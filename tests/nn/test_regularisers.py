"""The layers' regularisers (rnnlab.nn.regularise): weight-drop, recurrent dropout, zoneout.

Weight-drop is held against torch.nn run on the dropped weight (its masks replayed from
the seed); recurrent dropout and zoneout against the NumPy reference of the masked
recurrence (tests/ops/test_masked_ops.py holds the ops themselves).
"""

from __future__ import annotations

import pytest
import torch

import rnnlab
import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import backends

BACKENDS = [
    name for name in sorted(rnnlab.available_backends())
    if backends.can_run(name, torch.device("cpu"), torch.float64)
]
LAYERS = {"lstm": (rnn.LSTM, torch.nn.LSTM), "gru": (rnn.GRU, torch.nn.GRU)}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_weight_drop_is_torch_nn_on_the_dropped_weight(family, backend):
    """Output, final state and every gradient equal torch.nn's with W_hh ⊙ M / (1 - p),
    M replayed from the seed (one mask per layer and direction, in that order); the
    gradient reaching W_hh is M / (1 - p) ⊙ the dropped weight's."""
    ours_cls, torch_cls = LAYERS[family]
    p, T, B = 0.4, 5, 3
    kwargs = {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True,
              "dtype": torch.float64}
    ours = ours_cls(**kwargs, weight_drop=p)
    theirs = torch_cls(**kwargs)
    x = torch.randn(T, B, 3, dtype=torch.float64)
    torch.manual_seed(7)
    with backends.use_backend(backend):
        y, state = ours(x)
    torch.manual_seed(7)
    keeps = {}
    for name, value in ours.named_parameters():
        if name.startswith("weight_hh"):
            keeps[name] = torch.empty_like(value).bernoulli_(1 - p) / (1 - p)
    with torch.no_grad():
        for name, value in ours.named_parameters():
            getattr(theirs, name).copy_(value * keeps.get(name, 1.0))
    y_ref, state_ref = theirs(x)
    finals, finals_ref = (state, state_ref) if family == "gru" else (state[0], state_ref[0])
    assert_rel_close(y, y_ref, OUT_TOL[torch.float64], "y")
    assert_rel_close(finals, finals_ref, OUT_TOL[torch.float64], "h_n")
    (y.sum() + finals.square().sum()).backward()
    (y_ref.sum() + finals_ref.square().sum()).backward()
    for name, value in ours.named_parameters():
        expected = getattr(theirs, name).grad * keeps.get(name, 1.0)
        assert_rel_close(value.grad, expected, GRAD_TOL[torch.float64], name)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_weight_drop_in_eval_is_the_plain_layer(family):
    layer = LAYERS[family][0](3, 4, weight_drop=0.5)
    plain = LAYERS[family][0](3, 4)
    plain.load_state_dict(layer.state_dict())
    layer.eval()
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(layer(x)[0], plain(x)[0], rtol=0, atol=0)

"""Dropout between stacked layers, as torch.nn's tests hold it: ``test_RNN_dropout``
(where it acts and how it scales), ``test_RNN_dropout_state`` (fresh masks every call, also
after a save and load), ``test_RNN_change_dropout`` (the attribute can change between
calls), train and eval modes (``train_and_eval_differ``) and seeded determinism."""

from __future__ import annotations

import io

import pytest
import torch

F64 = torch.float64


@pytest.mark.parametrize("p", [0.0, 0.276, 0.731, 1.0])
@pytest.mark.parametrize("train", [True, False])
def test_dropout_acts_between_layers(impl, p, train):
    """All-ones weights, ReLU: layer 1 gives 10 per unit; layer 2 sums the 1000 units that
    dropout kept, each scaled by 1 / (1 - p)."""
    model = impl.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu", dtype=F64)
    model.train(train)
    with torch.no_grad():
        for weight in model.parameters():
            weight.fill_(1)
    output, hy = model(torch.ones(1, 1, 10, dtype=F64), torch.zeros(2, 1, 1000, dtype=F64))
    value = output[0, 0, 0].item()
    assert output.min() == output.max()
    if p == 0 or not train:
        assert value == 10000
    elif p == 1:
        assert value == 0
    else:
        assert 8000 < value < 12000
        kept_tens = value * (1 - p) % 10
        assert min(kept_tens, 10 - kept_tens) < 1e-2
    assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
    assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


@pytest.mark.parametrize("p", [0.0, 0.1234])
@pytest.mark.parametrize("train", [True, False])
def test_dropout_masks_are_fresh_every_call(impl, p, train):
    model = impl.RNN(100, 100, 2, bias=False, dropout=p, nonlinearity="relu")
    model.train(train)
    x, hx = torch.rand(1, 1, 100), torch.rand(2, 1, 100)
    output1, hy1 = model(x, hx)
    output2, hy2 = model(x, hx)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    loaded.flatten_parameters()
    output3, hy3 = loaded(x, hx)
    same = p == 0 or not train
    for a, b in [(output1, output2), (output1, output3), (hy1, hy2), (hy1, hy3)]:
        assert torch.equal(a, b) == same


@pytest.mark.parametrize("train", [True, False])
def test_changing_dropout_between_calls(impl, train):
    model = impl.RNN(100, 100, 2, dropout=0, nonlinearity="relu", dtype=F64)
    model.train(train)
    x = torch.rand(3, 2, 100, dtype=F64)
    previous = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        model.dropout = p
        output1, hy1 = model(x)
        output2, hy2 = model(x)
        deterministic = p in (0, 1) or not train
        assert torch.equal(output1, output2) == deterministic
        assert torch.equal(hy1, hy2) == deterministic
        if previous is not None:
            assert torch.equal(output1, previous) == (not train)
            assert torch.equal(output2, previous) == (not train)
        previous = output1


@pytest.mark.parametrize("layer", ["RNN", "GRU", "LSTM"])
def test_train_and_eval_differ_only_with_dropout(impl, layer):
    x = torch.randn(4, 3, 5)
    for p, differ in ((0.0, False), (0.5, True)):
        model = getattr(impl, layer)(5, 6, 2, dropout=p)
        train_out = model.train()(x)[0]
        eval_out = model.eval()(x)[0]
        assert torch.equal(train_out, eval_out) != differ


@pytest.mark.parametrize("layer", ["RNN", "GRU", "LSTM"])
def test_seeded_dropout_repeats(impl, layer):
    model = getattr(impl, layer)(5, 6, 3, dropout=0.5)
    x = torch.randn(4, 3, 5)
    torch.manual_seed(7)
    first = model(x)[0]
    torch.manual_seed(7)
    assert torch.equal(model(x)[0], first)

"""rnnlab.nn layers vs torch.nn on randomly drawn configurations (oracle 3).

Each draw covers the constructor arguments (layers, bias, batch_first, dropout in
training mode, bidirectional, proj_size, nonlinearity) and the input forms (batched,
unbatched, PackedSequence sorted and unsorted, rnnlab's ``lengths``), with and without
an initial state. Outputs, final states and the gradients of the input, the initial
state and every parameter must agree within the per-dtype tolerance, with torch's own
recurrent kernels blocked while rnnlab runs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close, torch_rnn_blocked
from rnnlab import ops

FAMILIES = {"rnn": (torch.nn.RNN, rnn.RNN), "lstm": (torch.nn.LSTM, rnn.LSTM),
            "gru": (torch.nn.GRU, rnn.GRU)}
FORMS = ("batched", "unbatched", "packed_sorted", "packed_unsorted", "lengths")


@dataclass(frozen=True)
class Draw:
    kwargs: dict
    form: str
    T: int
    B: int
    with_state: bool
    train: bool


def draw(family: str, seed: int) -> Draw:
    rng = random.Random(f"{family}-{seed}")
    num_layers = rng.choice([1, 1, 2, 3])
    hidden = rng.randint(2, 7)
    kwargs = {
        "input_size": rng.randint(1, 5),
        "hidden_size": hidden,
        "num_layers": num_layers,
        "bias": rng.random() < 0.8,
        "batch_first": rng.random() < 0.5,
        "dropout": rng.choice([0.0, 0.4]) if num_layers > 1 else 0.0,
        "bidirectional": rng.random() < 0.5,
    }
    if family == "lstm" and rng.random() < 0.4:
        kwargs["proj_size"] = rng.randint(1, hidden - 1)
    if family == "rnn":
        kwargs["nonlinearity"] = rng.choice(["tanh", "relu"])
    form = FORMS[seed % len(FORMS)]
    train = rng.random() < 0.7
    if kwargs["dropout"] and form == "lengths":
        # with lengths= rnnlab drops out the padded tensor, torch.nn (given the packed
        # batch) the packed data: the same seed cannot give the same masks, so such draws
        # compare in eval mode. A PackedSequence runs on its rows in both, masks included.
        train = False
    return Draw(
        kwargs=kwargs,
        form=form,
        T=rng.randint(1, 7),
        B=rng.randint(1, 4),
        with_state=rng.random() < 0.6,
        train=train,
    )


def make_inputs(d: Draw, family: str, dtype: torch.dtype, gen: torch.Generator):
    kw = d.kwargs
    D = 2 if kw["bidirectional"] else 1
    LD = kw["num_layers"] * D
    P = kw.get("proj_size", 0) or kw["hidden_size"]
    if d.form == "unbatched":
        x = torch.randn(d.T, kw["input_size"], generator=gen, dtype=dtype)
        state_shapes = [(LD, P), (LD, kw["hidden_size"])]
    else:
        shape = (d.B, d.T, kw["input_size"]) if kw["batch_first"] else (d.T, d.B, kw["input_size"])
        x = torch.randn(shape, generator=gen, dtype=dtype)
        state_shapes = [(LD, d.B, P), (LD, d.B, kw["hidden_size"])]
    lengths = None
    if d.form in ("packed_sorted", "packed_unsorted", "lengths"):
        lengths = torch.randint(1, d.T + 1, (d.B,), generator=gen)
        lengths[0] = d.T  # pad_packed_sequence pads to the longest length
        if d.form == "packed_sorted":
            lengths = lengths.sort(descending=True).values
    states = None
    if d.with_state:
        states = [torch.randn(s, generator=gen, dtype=dtype) for s in state_shapes]
        states = states if family == "lstm" else states[:1]
    return x, lengths, states


def make_pair(family: str, dtype: torch.dtype, seed: int):
    """The draw, a torch.nn layer and an rnnlab layer with its weights, and a generator."""
    d = draw(family, seed)
    torch_cls, our_cls = FAMILIES[family]
    torch.manual_seed(seed)
    theirs = torch_cls(**d.kwargs, dtype=dtype)
    ours = our_cls(**d.kwargs, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    theirs.train(d.train)
    ours.train(d.train)
    return d, theirs, ours, torch.Generator().manual_seed(seed)


def leafs(tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def call(module, x, lengths, states, family, form, batch_first):
    """Run ``module`` on the drawn input form; return (flat output tensor, final states)."""
    hx = None
    if states is not None:
        hx = tuple(states) if family == "lstm" else states[0]
    if form.startswith("packed"):
        packed = pack_padded_sequence(
            x, lengths, batch_first=batch_first, enforce_sorted=form == "packed_sorted"
        )
        out, h = module(packed, hx)
        assert isinstance(out, PackedSequence)
        assert torch.equal(out.batch_sizes, packed.batch_sizes)
        padded, _ = pad_packed_sequence(out, batch_first=batch_first)
        y = padded
    elif form == "lengths":
        if isinstance(module, rnn.RNNBase):
            y, h = module(x, hx, lengths=lengths)
        else:  # torch.nn's equivalent of rnnlab's lengths: pack, run, pad
            packed = pack_padded_sequence(x, lengths, batch_first=batch_first,
                                          enforce_sorted=False)
            out, h = module(packed, hx)
            y, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[
                1 if batch_first else 0])
    else:
        y, h = module(x, hx)
    finals = list(h) if family == "lstm" else [h]
    return y, finals


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", range(25))
def test_layer_matches_torch_nn(family, dtype, seed):
    d, theirs, ours, gen = make_pair(family, dtype, seed)
    x, lengths, states = make_inputs(d, family, dtype, gen)
    bf = d.kwargs["batch_first"]

    x_t, *states_t = leafs([x, *(states or [])])
    torch.manual_seed(1000 + seed)  # same dropout masks for both
    y_t, finals_t = call(theirs, x_t, lengths, states_t or None, family, d.form, bf)

    x_o, *states_o = leafs([x, *(states or [])])
    torch.manual_seed(1000 + seed)
    with torch_rnn_blocked():
        y_o, finals_o = call(ours, x_o, lengths, states_o or None, family, d.form, bf)

    assert_rel_close(y_o, y_t, OUT_TOL[dtype], "output")
    for k, (a, b) in enumerate(zip(finals_o, finals_t, strict=True)):
        assert_rel_close(a, b, OUT_TOL[dtype], f"final state {k}")

    # A random linear functional of every output, so each gradient path is exercised.
    weights = [torch.randn(t.shape, generator=gen, dtype=dtype) for t in [y_t, *finals_t]]
    loss_t = sum((w * t).sum() for w, t in zip(weights, [y_t, *finals_t], strict=True))
    loss_t.backward()
    with torch_rnn_blocked():
        loss_o = sum((w * t).sum() for w, t in zip(weights, [y_o, *finals_o], strict=True))
        loss_o.backward()

    assert_rel_close(x_o.grad, x_t.grad, GRAD_TOL[dtype], "d input")
    for k, (a, b) in enumerate(zip(states_o, states_t, strict=True)):
        assert_rel_close(a.grad, b.grad, GRAD_TOL[dtype], f"d initial state {k}")
    ours_params = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        assert ours_params[name].grad is not None, f"no gradient for {name}"
        assert_rel_close(ours_params[name].grad, p.grad, GRAD_TOL[dtype], f"d {name}")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_state_dict_round_trip_and_same_init(family):
    torch_cls, our_cls = FAMILIES[family]
    kwargs = {"num_layers": 2, "bidirectional": True}
    if family == "lstm":
        kwargs["proj_size"] = 3
    torch.manual_seed(7)
    theirs = torch_cls(4, 5, **kwargs)
    torch.manual_seed(7)
    ours = our_cls(4, 5, **kwargs)
    # Same parameter names in the same order, and torch.nn's init under the same seed.
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # rnnlab -> torch.nn: perturb ours, load into a fresh torch layer.
    with torch.no_grad():
        for p in ours.parameters():
            p.mul_(1.5)
    back = torch_cls(4, 5, **kwargs)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(6, 2, 4)
    y_ours = ours(x)[0]
    with torch.no_grad():
        assert_rel_close(y_ours, back(x)[0], OUT_TOL[torch.float32], "after round trip")


def test_blocker_catches_torch_kernels():
    """The guard used above really stops torch.nn's recurrent layers."""
    from helpers import TorchRNNUsed

    for layer in (torch.nn.LSTM(3, 4), torch.nn.GRU(3, 4), torch.nn.RNN(3, 4)):
        with pytest.raises(TorchRNNUsed), torch_rnn_blocked():
            layer(torch.randn(5, 2, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", range(25))
def test_inference_matches_torch_nn(family, dtype, seed, monkeypatch):
    """Under torch.no_grad() the layers run the inference ops (no saved activations):
    the same draws as above, outputs and final states against torch.nn."""
    d, theirs, ours, gen = make_pair(family, dtype, seed)
    x, lengths, states = make_inputs(d, family, dtype, gen)
    bf = d.kwargs["batch_first"]
    calls = []
    name = f"{family}_infer"
    real = getattr(ops, name)
    monkeypatch.setattr(ops, name, lambda *args: (calls.append(1), real(*args))[1])

    with torch.no_grad():
        torch.manual_seed(1000 + seed)
        y_t, finals_t = call(theirs, x, lengths, states, family, d.form, bf)
        torch.manual_seed(1000 + seed)
        with torch_rnn_blocked():
            y_o, finals_o = call(ours, x, lengths, states, family, d.form, bf)

    assert len(calls) == d.kwargs["num_layers"] * (2 if d.kwargs["bidirectional"] else 1)
    assert_rel_close(y_o, y_t, OUT_TOL[dtype], "output")
    for k, (a, b) in enumerate(zip(finals_o, finals_t, strict=True)):
        assert_rel_close(a, b, OUT_TOL[dtype], f"final state {k}")


def test_layers_keep_the_differentiable_op_where_autograd_or_a_recording_needs_it(monkeypatch):
    lstm = rnn.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    calls = []
    real = ops.lstm_infer
    monkeypatch.setattr(ops, "lstm_infer", lambda *args: (calls.append(1), real(*args))[1])
    y, _ = lstm(x)  # parameters require grad
    assert y.requires_grad and not calls
    with torch.no_grad():
        lstm(x)
    assert len(calls) == 1
    lstm.requires_grad_(False)
    lstm(x)  # nothing requires grad
    assert len(calls) == 2
    lstm(x.requires_grad_(True))  # the input does
    assert len(calls) == 2
    with torch.no_grad(), rnn.record(lstm) as rec:
        lstm(torch.randn(5, 2, 3))
    assert len(calls) == 2
    (gates,) = rec.gates.values()
    assert set(gates) >= {"i", "f", "g", "o"}

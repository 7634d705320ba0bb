"""The layers' regularisers (rnnlab.nn.regularise): weight-drop, recurrent dropout, zoneout.

Weight-drop is held against torch.nn run on the dropped weight (its masks replayed from
the seed); recurrent dropout and zoneout against the NumPy reference of the masked
recurrence (tests/ops/test_masked_ops.py holds the ops themselves).
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
import rnnlab.nn as rnn
from helpers import GRAD_TOL, OUT_TOL, assert_rel_close
from rnnlab import backends, reference
from rnnlab.nn import regularise

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
    with backends.use_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("error")  # no flatten_parameters (or any) warning
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


# ------------------------------------------------ recurrent dropout and zoneout vs reference


def _replayed_masks(layer, shapes, training: bool):
    """The masks the layer draws for one direction (after seeding torch alike), in its
    order: weight-drop, recurrent dropout, zoneout of h, zoneout of c."""
    reg = layer
    p_h, p_c = regularise.zoneout_shares(layer)
    w_hh_shape, (T, B, P, H) = shapes
    f64 = {"dtype": torch.float64}
    keep_w = drop = None
    if reg.weight_drop and training:
        keep_w = torch.empty(w_hh_shape, **f64).bernoulli_(1 - reg.weight_drop)
        keep_w = (keep_w / (1 - reg.weight_drop)).numpy()
    if reg.recurrent_dropout and training:
        drop = (torch.empty(B, P, **f64).bernoulli_(1 - reg.recurrent_dropout)
                / (1 - reg.recurrent_dropout)).numpy()

    def zoneout(p, shape):
        if not p:
            return None
        return torch.empty(shape, **f64).bernoulli_(p).numpy() if training else np.full(shape, p)

    keep_h = zoneout(p_h, (T, B, P))
    keep_c = zoneout(p_c, (T, B, H)) if layer.family == "lstm" else None
    return keep_w, {"drop_h": drop, "keep_h": keep_h, "keep_c": keep_c}


def _reference_stack(layer, x, lengths, dy, training):
    """The layer's output and parameter gradients (loss Σ dy ⊙ y) by the masked reference,
    layer by layer and direction by direction, the masks replayed from torch's RNG."""
    T, B, _ = x.shape
    H, P = layer.hidden_size, layer.proj_size or layer.hidden_size
    lstm = layer.family == "lstm"
    params = {name: value.detach().numpy() for name, value in layer.named_parameters()}
    layer_input, caches = x, []
    for k in range(layer.num_layers):
        outputs = []
        for direction in range(layer.num_directions):
            sfx = f"_l{k}" + ("_reverse" if direction else "")
            w_hh = params["weight_hh" + sfx]
            keep_w, masks = _replayed_masks(layer, (w_hh.shape, (T, B, P, H)), training)
            w_hh = w_hh if keep_w is None else w_hh * keep_w
            args = [layer_input, np.zeros((B, P))]
            args += [np.zeros((B, H))] if lstm else []
            args += [params["weight_ih" + sfx], w_hh, params.get("bias_ih" + sfx),
                     params.get("bias_hh" + sfx)]
            common = {"lengths": lengths, "reverse": bool(direction)}
            if lstm:
                args.append(params.get("weight_hr" + sfx))
                y, _, cache = reference.lstm_masked_forward(*args, **masks, **common)
            else:
                masks.pop("keep_c")
                y, _, cache = reference.gru_masked_forward(
                    *args, **masks, reset_after=layer.reset_after, **common
                )
            outputs.append(y)
            caches.append((sfx, cache, keep_w))
        layer_input = np.concatenate(outputs, axis=2)
    out = layer_input
    grads, dy_layer = {}, dy
    for k in reversed(range(layer.num_layers)):
        dx = 0.0
        for direction in range(layer.num_directions):
            sfx, cache, keep_w = caches[k * layer.num_directions + direction]
            dy_dir = dy_layer[..., direction * P:(direction + 1) * P]
            if lstm:
                g = reference.lstm_masked_backward(dy_dir, None, None, cache)
            else:
                g = reference.gru_masked_backward(dy_dir, None, cache)
            dx = dx + g["x"]
            grads["weight_ih" + sfx] = g["w_ih"]
            grads["bias_ih" + sfx], grads["bias_hh" + sfx] = g["b_ih"], g["b_hh"]
            grads["weight_hh" + sfx] = g["w_hh"] if keep_w is None else g["w_hh"] * keep_w
            if lstm and layer.proj_size:
                grads["weight_hr" + sfx] = g["w_hr"]
        dy_layer = dx
    return out, grads


STACKS = {
    "lstm": lambda: rnn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2,
                             weight_drop=0.3, recurrent_dropout=0.4, zoneout=(0.3, 0.5),
                             dtype=torch.float64),
    "gru": lambda: rnn.GRU(3, 4, num_layers=2, bidirectional=True, reset_after=False,
                           weight_drop=0.3, recurrent_dropout=0.4, zoneout=0.3,
                           dtype=torch.float64),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_stacked_bidirectional_packed_layer_matches_the_reference(family, training):
    """All three options at once, stacked and bidirectional, packed input of unequal
    lengths: output and every parameter gradient equal the masked reference's."""
    layer = STACKS[family]().train(training)
    T, B = 5, 3
    lengths = np.array([3, 5, 1])
    x = torch.randn(T, B, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    torch.manual_seed(11)
    out_packed, _ = layer(packed)
    y, _ = pad_packed_sequence(out_packed, total_length=T)
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    torch.manual_seed(11)
    y_ref, grads_ref = _reference_stack(layer, x.numpy(), lengths, dy.numpy(), training)
    assert_rel_close(y, y_ref, OUT_TOL[torch.float64], "y")
    for name, value in layer.named_parameters():
        assert_rel_close(value.grad, grads_ref[name], GRAD_TOL[torch.float64], name)


def _draw(seed: int):
    """A random layer (family, depth, directions, bias, projection or reset placement,
    each option on or off), input form and mode."""
    rng = random.Random(f"regularisers-{seed}")
    family = rng.choice(["lstm", "gru"])
    H = rng.randint(2, 5)
    kwargs = {"input_size": rng.randint(1, 4), "hidden_size": H,
              "num_layers": rng.choice([1, 2]), "bias": rng.random() < 0.8,
              "batch_first": rng.random() < 0.5, "bidirectional": rng.random() < 0.5,
              "weight_drop": rng.choice([0.0, 0.3]),
              "recurrent_dropout": rng.choice([0.0, 0.4]), "dtype": torch.float64}
    if family == "lstm":
        kwargs["proj_size"] = rng.choice([0, rng.randint(1, H - 1)])
        kwargs["zoneout"] = rng.choice([0.0, 0.2, (0.3, 0.1)])
    else:
        kwargs["reset_after"] = rng.random() < 0.5
        kwargs["zoneout"] = rng.choice([0.0, 0.2])
    form = rng.choice(["padded", "lengths", "packed"])
    return family, kwargs, form, rng.random() < 0.7


@pytest.mark.parametrize("seed", range(8))
def test_random_regularised_layers_match_the_reference(seed):
    family, kwargs, form, training = _draw(seed)
    layer = LAYERS[family][0](**kwargs).train(training)
    T, B = 4, 3
    lengths = np.array([4, 2, 3]) if form != "padded" else None
    x = torch.randn(T, B, kwargs["input_size"], dtype=torch.float64)
    given = x.transpose(0, 1) if kwargs["batch_first"] else x
    torch.manual_seed(seed)
    if form == "packed":
        packed = pack_padded_sequence(given, torch.tensor(lengths), kwargs["batch_first"],
                                      enforce_sorted=False)
        y = pad_packed_sequence(layer(packed)[0], kwargs["batch_first"], total_length=T)[0]
    else:
        y = layer(given, lengths=None if lengths is None else torch.tensor(lengths))[0]
    y = y.transpose(0, 1) if kwargs["batch_first"] else y
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    torch.manual_seed(seed)
    y_ref, grads_ref = _reference_stack(layer, x.numpy(), lengths, dy.numpy(), training)
    assert_rel_close(y, y_ref, OUT_TOL[torch.float64], f"y {kwargs}")
    for name, value in layer.named_parameters():
        assert_rel_close(value.grad, grads_ref[name], GRAD_TOL[torch.float64], name)


# ------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("value", [-0.1, 1.0, 2])
@pytest.mark.parametrize("name", ["weight_drop", "recurrent_dropout", "zoneout"])
def test_probability_outside_0_1_is_one_precise_error(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be a probability in \[0, 1\), got "):
        rnn.LSTM(3, 4, **{name: value})


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: rnn.GRU(3, 4, weight_drop="0.5"), r"^weight_drop must be a probability"),
        (lambda: rnn.LSTM(3, 4, zoneout=(0.1, 1.0)), r"^zoneout p_c must be a probability in"),
        (lambda: rnn.LSTM(3, 4, zoneout=(0.1,)), r"^zoneout of LSTM .* or a pair \(p_h, p_c\)"),
        (lambda: rnn.GRU(3, 4, zoneout=(0.1, 0.2)), r"^zoneout of GRU .* one p \(a GRU has no c\)"),
        (lambda: rnn.RNN(3, 4, weight_drop=0.1), r"unexpected keyword"),
    ],
    ids=["type", "p_c", "pair-length", "gru-pair", "rnn"],
)
def test_bad_regulariser_arguments(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_onnx_export_refuses_zoneout_with_reset_before():
    """(Zoneout with reset_after=True exports: tests/export/test_onnx_export.py.)"""
    pytest.importorskip("onnxscript")
    from rnnlab.export import ExportError, to_onnx

    layer = rnn.GRU(3, 4, zoneout=0.2, reset_after=False)
    with pytest.raises(ExportError, match=r"zoneout=0.2 and reset_after=False.*does not "):
        to_onnx(layer, (torch.randn(5, 2, 3),), None)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_stream_of_a_zoneout_layer_is_its_eval_form(family):
    """Stream runs the layer's eval recurrence (the zoneout expectation), chunk by chunk."""
    layer = LAYERS[family][0](3, 4, num_layers=2, zoneout=0.3, recurrent_dropout=0.2).eval()
    x = torch.randn(7, 3)
    expected, _ = layer(x)
    stream = rnn.Stream(layer)
    got = torch.cat([stream.step(x[:4]), stream.step(x[4])[None], stream.step(x[5:])])
    assert_rel_close(got, expected, OUT_TOL[torch.float32], "stream")


CELLS = {"lstm": (rnn.LSTMCell, (0.3, 0.5)), "gru": (rnn.GRUCell, 0.3)}


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_cell_zoneout_is_one_step_of_the_layer(family):
    """Eval: a loop of the cell equals the layer (the expectation); training: the cell
    mixes the plain cell's state with the previous one by masks replayed from the seed."""
    cell_cls, zoneout = CELLS[family]
    cell = cell_cls(3, 4, zoneout=zoneout, dtype=torch.float64).eval()
    layer = LAYERS[family][0](3, 4, zoneout=zoneout, dtype=torch.float64).eval()
    layer.load_state_dict({f"{name}_l0": value for name, value in cell.state_dict().items()})
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    state = None
    for t in range(5):
        state = cell(x[t], state)
    expected = layer(x)[1]
    finals = [state[0], state[1]] if family == "lstm" else [state]
    expected = [expected[0][0], expected[1][0]] if family == "lstm" else [expected[0]]
    for got, want in zip(finals, expected, strict=True):
        assert_rel_close(got, want, OUT_TOL[torch.float64], "eval loop")

    cell.train()
    plain = cell_cls(3, 4, dtype=torch.float64)
    plain.load_state_dict(cell.state_dict())
    previous = (torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64))
    previous = previous if family == "lstm" else previous[0]
    torch.manual_seed(5)
    got = cell(x[0], previous)
    torch.manual_seed(5)
    shares = zoneout if family == "lstm" else (zoneout,)
    news = plain(x[0], previous)
    pairs = zip(shares, previous, news, strict=True) if family == "lstm" else [
        (zoneout, previous, news)]
    for (p, before, after), value in zip(pairs, got if family == "lstm" else [got], strict=True):
        keep = torch.empty_like(after).bernoulli_(p)
        assert_rel_close(value, keep * before + (1 - keep) * after, OUT_TOL[torch.float64], "train")


# ------------------------------------------------ with layer_norm


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_weight_drop_with_layer_norm_is_the_normalised_layer_on_the_dropped_weight(family):
    """weight_drop acts on the weight handed to the op, so it combines with layer_norm: the
    result equals the layer-normalised layer run on W_hh ⊙ M / (1 - p), M replayed from
    the seed, and W_hh's gradient is M / (1 - p) ⊙ the dropped weight's."""
    cls, p = LAYERS[family][0], 0.3
    kwargs = {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True,
              "layer_norm": True, "dtype": torch.float64}
    ours, plain = cls(**kwargs, weight_drop=p), cls(**kwargs)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(11)
    y, _ = ours(x)
    torch.manual_seed(11)
    keeps = {name: torch.empty_like(value).bernoulli_(1 - p) / (1 - p)
             for name, value in ours.named_parameters() if name.startswith("weight_hh")}
    with torch.no_grad():
        for name, value in ours.named_parameters():
            getattr(plain, name).copy_(value * keeps.get(name, 1.0))
    y_ref, _ = plain(x)
    assert_rel_close(y, y_ref, OUT_TOL[torch.float64], "y")
    y.square().sum().backward()
    y_ref.square().sum().backward()
    for name, value in ours.named_parameters():
        expected = getattr(plain, name).grad * keeps.get(name, 1.0)
        assert_rel_close(value.grad, expected, GRAD_TOL[torch.float64], name)


@pytest.mark.parametrize("option", [{"recurrent_dropout": 0.2}, {"zoneout": 0.1}],
                         ids=["recurrent_dropout", "zoneout"])
@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_layer_norm_refuses_recurrence_changing_regularisers_by_name(family, option):
    name = next(iter(option))
    with pytest.raises(ValueError, match=rf"^layer_norm=True combines with weight_drop, not "
                                         rf"\(yet\) with recurrent_dropout or zoneout.*{name}="):
        LAYERS[family][0](3, 4, layer_norm=True, **option)


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_layer_norm_cell_with_zoneout_mixes_the_normalised_step(family):
    """The cells take both: in eval, h' = p ⊙ h + (1 - p) ⊙ (the layer-normalised step)."""
    cls = rnn.LSTMCell if family == "lstm" else rnn.GRUCell
    both = cls(3, 4, layer_norm=True, zoneout=0.25, dtype=torch.float64).eval()
    step = cls(3, 4, layer_norm=True, dtype=torch.float64).eval()
    step.load_state_dict(both.state_dict())
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    if family == "lstm":
        c = torch.randn(2, 4, dtype=torch.float64)
        got, want = both(x, (h, c)), step(x, (h, c))
        for g, w, before in zip(got, want, (h, c), strict=True):
            assert_rel_close(g, 0.25 * before + 0.75 * w, OUT_TOL[torch.float64], "state")
    else:
        assert_rel_close(both(x, h), 0.25 * h + 0.75 * step(x, h), OUT_TOL[torch.float64], "h")

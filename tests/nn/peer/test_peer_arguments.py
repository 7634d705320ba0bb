"""Constructor arguments, parameters and repr, as torch.nn's tests hold them
(``module_error_inputs_torch_nn_RNN_GRU``, ``test_projections_errors_on_gru_and_rnn``,
``test_RNN_nonlinearity``, ``test_RNN_cell_forward_zero_hidden_size``, ``test_repr``,
``test_factory_kwargs``)."""

from __future__ import annotations

import pytest
import torch

LAYERS = ("RNN", "GRU", "LSTM")

# (arguments, kwargs, torch's class, torch's tested message, rnnlab's message)
BAD_LAYER_ARGUMENTS = [
    ((10, 0, 1), {}, ValueError, "hidden_size must be greater than zero",
     r"hidden_size must be an integer >= 1, got 0"),
    ((10, 10, 0), {}, ValueError, "num_layers must be greater than zero",
     r"num_layers must be an integer >= 1, got 0"),
    ((3, 5), {"bias": 0}, TypeError, "bias should be of type bool, got: int",
     "bias must be a bool, got int 0"),
    ((3, 5), {"bias": 1}, TypeError, "bias should be of type bool, got: int",
     "bias must be a bool, got int 1"),
    ((3, 5), {"bias": "True"}, TypeError, "bias should be of type bool, got: str",
     "bias must be a bool, got str 'True'"),
    ((3, 5), {"batch_first": 0}, TypeError, "batch_first should be of type bool, got: int",
     "batch_first must be a bool, got int 0"),
    ((3, 5), {"batch_first": "False"}, TypeError,
     "batch_first should be of type bool, got: str", "batch_first must be a bool, got str"),
    ((3.0, 5), {}, TypeError, "input_size should be of type int, got: float",
     r"input_size must be an integer >= 1, got float 3.0"),
    (("10", 5), {}, TypeError, "input_size should be of type int, got: str",
     r"input_size must be an integer >= 1, got str '10'"),
    ((0, 5), {}, ValueError, "input_size must be greater than zero",
     r"input_size must be an integer >= 1, got 0"),
    ((-1, 5), {}, ValueError, "input_size must be greater than zero",
     r"input_size must be an integer >= 1, got -1"),
    ((3, 5.0), {}, TypeError, "hidden_size should be of type int, got: float",
     r"hidden_size must be an integer >= 1, got float 5.0"),
    ((3, 5, 2), {"dropout": 1.5}, ValueError, r"dropout should be a number in range \[0, 1\]",
     r"dropout must be a number in \[0, 1\], got 1.5"),
]


@pytest.mark.differs("messages")
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(("args", "kwargs", "error", "torch_message", "rnnlab_message"),
                         BAD_LAYER_ARGUMENTS)
def test_bad_layer_arguments(impl, differs, layer, args, kwargs, error, torch_message,
                             rnnlab_message):
    with pytest.raises(error, match=rnnlab_message if differs else torch_message):
        getattr(impl, layer)(*args, **kwargs)


@pytest.mark.differs("messages")
@pytest.mark.parametrize("layer", ["RNN", "GRU"])
def test_projections_only_for_lstm(impl, differs, layer):
    message = ("proj_size is only supported by LSTM, not " + layer if differs
               else "proj_size argument is only supported for LSTM, not RNN or GRU")
    with pytest.raises(ValueError, match=message):
        getattr(impl, layer)(30, 20, 2, proj_size=10)


@pytest.mark.differs("messages")
@pytest.mark.parametrize(("proj_size", "torch_message", "rnnlab_message"), [
    (20, "proj_size has to be smaller than hidden_size", "proj_size must be smaller than"),
    (-1, "proj_size should be a positive integer or zero",
     r"proj_size must be an integer >= 0, got -1"),
])
def test_bad_projection_size(impl, differs, proj_size, torch_message, rnnlab_message):
    with pytest.raises(ValueError, match=rnnlab_message if differs else torch_message):
        impl.LSTM(30, 20, proj_size=proj_size)


@pytest.mark.differs("messages")
def test_rnn_nonlinearity(impl, differs):
    assert impl.RNN(1, 10).nonlinearity == "tanh"
    assert impl.RNN(1, 10, nonlinearity="relu").nonlinearity == "relu"
    assert impl.RNN(1, 10, 1, "relu").nonlinearity == "relu"  # positional, as torch.nn
    with pytest.raises(ValueError, match="unknown nonlinearity" if differs
                       else "Unknown nonlinearity"):
        impl.RNN(1, 10, nonlinearity="garbage")


def test_unknown_cell_nonlinearity_raises_runtime_error(impl):
    """torch.nn raises when the cell runs, rnnlab when it is built: both before any output."""
    with pytest.raises(RuntimeError, match=r"(?i)unknown nonlinearity"):
        impl.RNNCell(10, 20, nonlinearity="garbage")(torch.randn(3, 10))


@pytest.mark.differs("strict booleans")
@pytest.mark.parametrize(("make", "name"), [
    (lambda impl: impl.GRU(3, 4, bidirectional="yes"), "bidirectional"),
    (lambda impl: impl.GRUCell(3, 4, bias=1), "bias"),
])
def test_flags_that_torch_takes_any_value_for(impl, differs, make, name):
    if differs:
        with pytest.raises(TypeError, match=f"{name} must be a bool"):
            make(impl)
    else:
        make(impl)


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cells_of_hidden_size_zero(impl, cell):
    """``test_RNN_cell_forward_zero_hidden_size``: (3, 0) states out."""
    kwargs = [{"nonlinearity": "tanh"}, {"nonlinearity": "relu"}] if cell == "RNNCell" else [{}]
    for kw in kwargs:
        module = getattr(impl, cell)(10, 0, **kw)
        x, hx = torch.randn(3, 10), torch.randn(3, 0)
        out = module(x, (hx, hx) if cell == "LSTMCell" else hx)
        for state in out if cell == "LSTMCell" else [out]:
            assert state.shape == (3, 0)


@pytest.mark.parametrize(("args", "error"), [((3.0, 4), TypeError), (("3", 4), TypeError),
                                             ((3, 4.0), TypeError), ((-1, 4), RuntimeError)])
def test_bad_cell_sizes(impl, args, error):
    with pytest.raises(error):
        impl.LSTMCell(*args)


CONFIGS = [
    ("RNN", dict(num_layers=2, nonlinearity="relu", bias=False, batch_first=True)),
    ("GRU", dict(num_layers=3, bidirectional=True, dropout=0.25)),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)),
    ("LSTM", dict(bias=False, batch_first=True)),
]


@pytest.mark.parametrize(("layer", "kwargs"), CONFIGS)
def test_parameters_as_torch_nn(impl, layer, kwargs):
    """Names, order, shapes and the same initial values from the same seed; ``all_weights``,
    ``_all_weights``, ``_flat_weights_names``, ``_flat_weights``, ``mode``."""
    torch.manual_seed(0)
    ours = getattr(impl, layer)(3, 4, **kwargs)
    torch.manual_seed(0)
    ref = getattr(torch.nn, layer)(3, 4, **kwargs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for (_, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        assert p.shape == q.shape and torch.equal(p, q)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert ours._all_weights == ref._all_weights
    assert [[w.shape for w in ws] for ws in ours.all_weights] == \
        [[w.shape for w in ws] for ws in ref.all_weights]
    assert all(w is getattr(ours, n)
               for w, n in zip(ours._flat_weights, ours._flat_weights_names, strict=True))
    assert ours.mode == ref.mode
    assert list(ours.state_dict()) == list(ref.state_dict())
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "proj_size"):
        assert getattr(ours, attr) == getattr(ref, attr), attr


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cell_parameters_as_torch_nn(impl, cell):
    torch.manual_seed(0)
    ours = getattr(impl, cell)(3, 4, bias=False)
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(3, 4, bias=False)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), ref.parameters(), strict=True))
    assert ours.bias_ih is None and ours.bias_hh is None


@pytest.mark.parametrize(("make", "expected"), [
    (lambda m: m.LSTM(3, 4, 2, bias=False, batch_first=True, dropout=0.5, bidirectional=True,
                      proj_size=2),
     "LSTM(3, 4, proj_size=2, num_layers=2, bias=False, batch_first=True, dropout=0.5, "
     "bidirectional=True)"),
    (lambda m: m.GRU(3, 4), "GRU(3, 4)"),
    (lambda m: m.RNNCell(3, 4, bias=False, nonlinearity="relu"),
     "RNNCell(3, 4, bias=False, nonlinearity=relu)"),
    (lambda m: m.LSTMCell(3, 4), "LSTMCell(3, 4)"),
])
def test_repr(impl, make, expected):
    assert repr(make(impl)) == expected


@pytest.mark.differs("RNN repr")
def test_rnn_repr_names_its_nonlinearity(impl, differs):
    expected = "RNN(3, 4, nonlinearity=relu)" if differs else "RNN(3, 4)"
    assert repr(impl.RNN(3, 4, nonlinearity="relu")) == expected


@pytest.mark.parametrize("make", [
    lambda m, **f: m.LSTM(3, 4, 2, bidirectional=True, proj_size=2, **f),
    lambda m, **f: m.GRUCell(3, 4, **f),
])
def test_factory_kwargs(impl, make):
    module = make(impl, device="meta", dtype=torch.float64)
    assert all(p.is_meta and p.dtype == torch.float64 for p in module.parameters())
    module = module.to_empty(device="cpu")
    assert all(p.device.type == "cpu" for p in module.parameters())

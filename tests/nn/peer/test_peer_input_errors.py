"""Bad inputs and states raise what torch.nn raises (``test_rnn_args_check``,
``test_projections_lstm_args_check``, ``test_error_RNN_seq_len_zero``,
``test_rnn_check_device``, ``test_RNN_cell_no_broadcasting``,
``test_LSTM_cell_forward_input_size``/``hidden_size``, and the cells' and layers'
``module_error_inputs``)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

LAYERS = ("RNN", "GRU", "LSTM")
INPUT, HIDDEN, LAYERS_N, BATCH, STEPS, BAD = 3, 5, 2, 4, 6, 7


def _hidden(layer, h_shape, c_shape=None):
    h = torch.randn(h_shape)
    if layer != "LSTM":
        return [h]
    c = torch.randn(c_shape or h_shape)
    good = torch.randn((LAYERS_N, BATCH, HIDDEN))
    return [(h, c)] if c_shape else [(h, good), (good, h)]


def _with(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(("input_shape", "hidden_shape"), [
    (_with((STEPS, BATCH, INPUT), 1, BAD), (LAYERS_N, BATCH, HIDDEN)),  # input batch
    ((STEPS, BATCH, INPUT), _with((LAYERS_N, BATCH, HIDDEN), 1, BAD)),  # state batch
    (_with((STEPS, BATCH, INPUT), 2, BAD), (LAYERS_N, BATCH, HIDDEN)),  # input features
    ((STEPS, BATCH, INPUT), _with((LAYERS_N, BATCH, HIDDEN), 2, BAD)),  # state features
    ((STEPS, BATCH, INPUT), _with((LAYERS_N, BATCH, HIDDEN), 0, BAD)),  # state layers
    ((STEPS, BATCH, INPUT), (LAYERS_N, HIDDEN)),                         # state rank
    ((STEPS, INPUT), (LAYERS_N, 1, HIDDEN)),                             # unbatched rank
])
def test_wrong_input_or_state_shape_is_a_runtime_error(impl, layer, input_shape, hidden_shape):
    model = getattr(impl, layer)(INPUT, HIDDEN, LAYERS_N)
    x = torch.randn(input_shape)
    for hx in _hidden(layer, hidden_shape):
        with pytest.raises(RuntimeError):
            model(x, hx)


@pytest.mark.parametrize(("h_shape", "c_shape"), [
    ((LAYERS_N, BAD, 2), (LAYERS_N, BAD, HIDDEN)),
    ((LAYERS_N, BATCH, BAD), (LAYERS_N, BATCH, BAD)),
    ((BAD, BATCH, 2), (BAD, BATCH, HIDDEN)),
    ((LAYERS_N, BATCH, HIDDEN), (LAYERS_N, BATCH, HIDDEN)),  # h of hidden_size, not proj_size
    ((LAYERS_N, BATCH, 2), (LAYERS_N, BATCH, 2)),             # c of proj_size, not hidden_size
])
def test_projection_state_shapes(impl, h_shape, c_shape):
    model = impl.LSTM(INPUT, HIDDEN, LAYERS_N, proj_size=2)
    with pytest.raises(RuntimeError):
        model(torch.randn(STEPS, BATCH, INPUT), (torch.randn(h_shape), torch.randn(c_shape)))


@pytest.mark.parametrize("layer", LAYERS)
def test_state_batch_must_match_packed_input(impl, layer):
    packed = pack_sequence([torch.randn(4, INPUT), torch.randn(2, INPUT)])
    model = getattr(impl, layer)(INPUT, HIDDEN)
    h = torch.zeros(1, 3, HIDDEN)
    with pytest.raises(RuntimeError):
        model(packed, (h, h) if layer == "LSTM" else h)


def test_lstm_needs_two_states(impl):
    h = torch.zeros(1, BATCH, HIDDEN)
    with pytest.raises(RuntimeError):
        impl.LSTM(INPUT, HIDDEN)(torch.randn(STEPS, BATCH, INPUT), (h, h, h))


@pytest.mark.differs("messages")
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_empty_time_dimension(impl, differs, layer, bidirectional):
    model = getattr(impl, layer)(5, 6, bidirectional=bidirectional)
    message = ("input has 0 time steps, expected at least 1" if differs
               else "Expected sequence length to be larger than 0 in RNN")
    with pytest.raises(RuntimeError, match=message):
        model(torch.ones(0, 10, 5))


@pytest.mark.differs("messages")
@pytest.mark.parametrize("layer", LAYERS)
def test_input_dtype_must_match_the_parameters(impl, differs, layer):
    """``module_error_inputs_torch_nn_RNN_GRU``: a ValueError naming both dtypes and the two
    conversions."""
    model = getattr(impl, layer)(3, 5)
    message = (r"input has dtype torch.float64 but the layer's parameters are torch.float32; "
               r"convert one of them \(e.g. layer.to\(torch.float64\) or "
               r"input.to\(torch.float32\)\)" if differs else
               r"RNN input dtype .* does not match weight dtype .* Convert input: "
               r"input\.to\(.*\), or convert model: model\.to\(.*\)")
    with pytest.raises(ValueError, match=message):
        model(torch.randn(2, 4, 3, dtype=torch.float64))


@pytest.mark.parametrize("layer", LAYERS)
def test_state_dtype_must_match_the_parameters(impl, layer):
    model = getattr(impl, layer)(3, 5)
    h = torch.zeros(1, 4, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 4, 3), (h, h) if layer == "LSTM" else h)


@pytest.mark.differs("messages")
@pytest.mark.parametrize("layer", LAYERS)
def test_input_and_parameters_on_different_devices(impl, differs, layer):
    model = getattr(impl, layer)(INPUT, HIDDEN)
    x = torch.randn(STEPS, BATCH, INPUT)
    message = ("input is on device meta but the layer's parameters are on cpu" if differs
               else "Input and parameter tensors are not at the same device")
    with pytest.raises(RuntimeError, match=message):
        model(x.to("meta"))
    h = torch.zeros(1, BATCH, HIDDEN, device="meta")
    message = ("h_0 is on device meta but the layer's parameters are on cpu" if differs
               else "Input and hidden tensors are not at the same device")
    with pytest.raises(RuntimeError, match=message):
        model(x, (h, h) if layer == "LSTM" else h)


@pytest.mark.parametrize("shape", [(3,), (5, 2, 3, 1)])
def test_input_rank(impl, shape):
    with pytest.raises(ValueError):
        impl.GRU(3, 4)(torch.randn(shape))


# Cells: (input shape, state shape, error, torch's message, rnnlab's message)
CELL_ERRORS = [
    ((3, 11), (3, 20), RuntimeError, "input has inconsistent input_size: got 11 expected 10",
     "input has 11 features, expected input_size=10"),
    ((3, 10), (3, 21), RuntimeError, "hidden0 has inconsistent hidden_size: got 21, expected 20",
     r"has shape \(3, 21\), expected \(3, 20\)"),
    ((3, 10), (5, 20), RuntimeError, "Input batch size 3 doesn't match hidden0 batch size 5",
     r"has shape \(5, 20\), expected \(3, 20\)"),
    ((3, 10), (3, 1, 1, 20), ValueError, r"Expected (hidden|hx\[0\]) to be 1D or 2D, got 4D",
     r"has shape \(3, 1, 1, 20\), expected \(3, 20\)"),
    ((3, 1, 10), (3, 20), ValueError, "Expected input to be 1D or 2D, got 3D instead",
     r"input must be 2-D \(B, I\) or 1-D \(I,\), got shape \(3, 1, 10\)"),
]


@pytest.mark.differs("messages")
@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize(("x_shape", "h_shape", "error", "torch_message", "rnnlab_message"),
                         CELL_ERRORS)
def test_cell_errors(impl, differs, cell, x_shape, h_shape, error, torch_message,
                     rnnlab_message):
    module = getattr(impl, cell)(10, 20)
    h = torch.randn(h_shape)
    with pytest.raises(error, match=rnnlab_message if differs else torch_message):
        module(torch.randn(x_shape), (h, h) if cell == "LSTMCell" else h)


@pytest.mark.parametrize(("x_shape", "bad_shape"), [
    ((3, 10), (1, 20)),   # state batch 1 is not broadcast over the input's batch
    ((3, 10), (3, 1)),    # state features 1 are not broadcast over hidden_size
    ((3, 1), (3, 20)),    # input features 1 are not broadcast over input_size
])
def test_cells_do_not_broadcast(impl, x_shape, bad_shape):
    x, bad, good = torch.randn(x_shape), torch.randn(bad_shape), torch.randn(3, 20)
    for module, hx in [(impl.RNNCell(10, 20), bad), (impl.GRUCell(10, 20), bad),
                       (impl.LSTMCell(10, 20), (bad, good)), (impl.LSTMCell(10, 20), (good, bad))]:
        with pytest.raises(RuntimeError):
            module(x, hx)


@pytest.mark.parametrize("cell", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cell_dtypes_must_match(impl, cell):
    module = getattr(impl, cell)(10, 20)
    h = torch.randn(3, 20, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        module(torch.randn(3, 10, dtype=torch.float64))
    with pytest.raises(RuntimeError):
        module(torch.randn(3, 10), (h, h) if cell == "LSTMCell" else h)

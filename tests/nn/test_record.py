"""Gate recording and the gradient through time, from an ordinary forward/backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnlab.nn as rnn
from helpers import assert_rel_close
from rnnlab import reference


def test_lstm_gates_and_hidden_grads_match_reference():
    torch.manual_seed(0)
    layer = rnn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 3])
    with rnn.record(layer) as rec:
        out, _ = layer(x, lengths=lengths)
        out.sum().backward()
    p = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    x_tm = x.transpose(0, 1).numpy()
    y_ref, _, cache = reference.lstm_forward(
        x_tm, np.zeros((2, 4)), np.zeros((2, 4)), p["weight_ih_l0"], p["weight_hh_l0"],
        p["bias_ih_l0"], p["bias_hh_l0"], lengths=lengths.numpy(),
    )
    grads = reference.lstm_backward(np.ones_like(y_ref), None, None, cache)
    assert set(rec.gates) == {"l0"}
    assert set(rec.gates["l0"]) == {"i", "f", "g", "o", "c"}
    for name, value in cache.gates.items():  # batch_first layout, like the output
        assert_rel_close(rec.gates["l0"][name], torch.from_numpy(value).transpose(0, 1), 1e-12,
                         name)
    assert_rel_close(rec.hidden_grads["l0"], torch.from_numpy(grads["h"]).transpose(0, 1),
                     1e-12, "dL/dh_t")
    norms = rec.hidden_grad_norms("l0")
    assert norms.shape == (6,)
    expected = np.linalg.norm(grads["h"], axis=-1).mean(axis=1)
    assert_rel_close(norms, torch.from_numpy(expected), 1e-12, "norms")


def test_recording_in_a_model_keys_by_module_path_and_direction():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = rnn.GRU(3, 4, num_layers=2, bidirectional=True)
            self.head = torch.nn.Linear(8, 1)

        def forward(self, x):
            return self.head(self.encoder(x)[0])

    net = Net()
    x = torch.randn(5, 2, 3)
    plain = net(x)
    with rnn.record(net, grads=False) as rec:
        recorded = net(x)
    torch.testing.assert_close(recorded, plain, rtol=0, atol=0)  # recording changes nothing
    assert set(rec.gates) == {"encoder.l0", "encoder.l0_reverse", "encoder.l1",
                              "encoder.l1_reverse"}
    assert rec.gates["encoder.l1"]["z"].shape == (5, 2, 4)
    assert rec.hidden_grads == {}
    assert net.encoder._recording is None  # the block leaves no trace


@pytest.mark.parametrize("layer_class, options", [
    (rnn.LSTM, {}), (rnn.GRU, {"layer_norm": True}), (rnn.MinLSTM, {}),
], ids=["lstm", "lngru", "minlstm"])
def test_hidden_is_each_layers_output_in_the_outputs_layout(layer_class, options):
    """``hidden`` holds h_t of every layer and direction: the top layer's two are the
    output; layer 0's, fed to a one-layer copy of layer 1, give layer 1's again."""
    torch.manual_seed(0)

    def make(input_size, num_layers):
        return layer_class(input_size, 4, num_layers=num_layers, bidirectional=True,
                           batch_first=True, **options).eval()

    layer, top = make(3, 2), make(8, 1)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in layer.state_dict().items()
                         if "_l1" in k})
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 4])
    with rnn.record(layer, grads=False) as rec:
        out, _ = layer(x, lengths=lengths)
    assert set(rec.hidden) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    assert rec.hidden["l0"].shape == (2, 6, 4)  # batch_first, like the output
    torch.testing.assert_close(torch.cat([rec.hidden["l1"], rec.hidden["l1_reverse"]], -1),
                               out, rtol=0, atol=0)
    with torch.no_grad():
        again, _ = top(torch.cat([rec.hidden["l0"], rec.hidden["l0_reverse"]], -1),
                       lengths=lengths)
    assert_rel_close(again, out, 1e-5, "layer 1 from the recorded h of layer 0")


def test_rnn_records_pre_activation_and_vanishing_gradient_shows():
    """A tanh RNN with small weights: ∂L/∂h_t shrinks geometrically away from the loss."""
    torch.manual_seed(0)
    layer = rnn.RNN(2, 8)
    with torch.no_grad():
        layer.weight_hh_l0.mul_(0.3)
    x = torch.randn(30, 1, 2)
    with rnn.record(layer) as rec:
        out, _ = layer(x)
        out[-1].sum().backward()  # loss on the last step only
    assert_rel_close(rec.gates["l0"]["a"].tanh(), out.detach(), 1e-6, "tanh(a) = h")
    norms = rec.hidden_grad_norms("l0")
    assert norms[-1] > 1e3 * norms[0]


def test_record_rejects_a_model_without_rnnlab_layers():
    with pytest.raises(ValueError, match="found no rnnlab recurrent layer"), rnn.record(
        torch.nn.Linear(2, 2)
    ):
        pass
    with pytest.raises(TypeError, match=r"needs a torch\.nn\.Module"), rnn.record("lstm"):
        pass


def test_hidden_grad_norms_before_backward_is_a_clear_error():
    layer = rnn.LSTM(2, 3)
    with rnn.record(layer) as rec:
        layer(torch.randn(4, 1, 2))
    with pytest.raises(KeyError, match="has backward run"):
        rec.hidden_grad_norms("l0")

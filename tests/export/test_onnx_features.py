"""ONNX export beyond the matrix: plain torch.onnx.export, whole models, refusals."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from rnnlab import ops
from rnnlab.export import ExportError, to_onnx, to_torch_nn, translation_table
from rnnlab.nn import GRU, LSTM

pytestmark = pytest.mark.filterwarnings(  # torch.export's own deprecation noise
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)


def _run(model_proto, feeds):
    session = ort.InferenceSession(model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds, strict=True)))


def _op_types(model_proto):
    return [n.op_type for n in model_proto.graph.node]


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_reverse_direction_with_lengths_is_packed_sequence_semantics(cls, tmp_path):
    """ONNX's reverse direction with sequence_lens runs over each sample's valid span, as
    torch.nn does on a PackedSequence (checked against torch.nn itself, not rnnlab)."""
    torch.manual_seed(0)
    layer = cls(4, 5, bidirectional=True).eval()
    to_onnx(layer, (torch.randn(5, 3, 4),), tmp_path / "m.onnx",
            example_kwargs={"lengths": torch.tensor([5, 2, 4])})
    proto = onnx.load(tmp_path / "m.onnx")
    reference = to_torch_nn(layer)
    x, lengths = torch.randn(9, 4, 4), torch.tensor([3, 9, 1, 6])
    got = _run(proto, [x.numpy(), lengths.numpy()])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    with torch.no_grad():
        y, state = reference(packed)
    y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=9)
    h_n = state[0] if cls is LSTM else state
    np.testing.assert_allclose(got[0], y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], h_n.numpy(), rtol=1e-5, atol=1e-5)


class Tagger(nn.Module):
    """Embedding -> bidirectional LSTM over padded batches -> per-step linear head."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.lstm = LSTM(8, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, tokens, lengths):
        y, _ = self.lstm(self.embed(tokens), lengths=lengths)
        return self.head(y)


def test_whole_model_with_lengths(tmp_path):
    torch.manual_seed(0)
    model = Tagger().eval()
    tokens = torch.randint(0, 20, (3, 7))
    program = to_onnx(model, (tokens, torch.tensor([7, 2, 5])), tmp_path / "tagger.onnx")
    proto = onnx.load(tmp_path / "tagger.onnx")
    assert _op_types(proto).count("LSTM") == 2
    assert program.model_proto.graph.node  # the returned program holds the same model
    for B, T in [(2, 11), (5, 1), (1, 4)]:
        tokens = torch.randint(0, 20, (B, T))
        lengths = torch.randint(1, T + 1, (B,))
        (got,) = _run(proto, [tokens.numpy(), lengths.numpy()])
        with torch.no_grad():
            want = model(tokens, lengths).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_plain_torch_onnx_export_with_the_table():
    """Without to_onnx's fusion, a bidirectional layer is two single-direction nodes."""
    torch.manual_seed(0)
    layer = GRU(4, 5, num_layers=2, bidirectional=True).eval()
    x = torch.randn(6, 3, 4)
    program = torch.onnx.export(
        layer, (x,), dynamo=True, custom_translation_table=translation_table(),
        dynamic_shapes=({0: torch.export.Dim("time"), 1: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    gru_nodes = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(gru_nodes) == 4
    assert not {"Loop", "Scan"} & set(_op_types(proto))
    x = torch.randn(9, 2, 4)
    got = _run(proto, [x.numpy()])
    with torch.no_grad():
        want = layer(x)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want[1].numpy(), rtol=1e-5, atol=1e-5)


def test_export_restores_training_mode_and_drops_dropout(tmp_path):
    torch.manual_seed(0)
    layer = LSTM(4, 5, num_layers=2, dropout=0.5)
    assert layer.training
    proto = to_onnx(layer, (torch.randn(6, 3, 4),)).model_proto
    assert layer.training
    assert "Dropout" not in _op_types(proto)


def test_projection_is_refused_by_name():
    with pytest.raises(ExportError, match="proj_size=2"):
        to_onnx(LSTM(4, 5, proj_size=2), (torch.randn(6, 3, 4),))


def test_projection_is_refused_through_plain_torch_onnx_export():
    with pytest.raises(Exception, match="proj_size"):
        torch.onnx.export(LSTM(4, 5, proj_size=2).eval(), (torch.randn(6, 3, 4),),
                          dynamo=True, custom_translation_table=translation_table(),
                          verbose=False)


class GateLeak(nn.Module):
    """Returns the saved gate activations of the op, which ONNX's LSTM cannot provide."""

    def __init__(self):
        super().__init__()
        self.lstm = LSTM(4, 5)

    def forward(self, x):
        h0 = x.new_zeros(x.shape[1], 5)
        lstm = self.lstm
        y, _, _, gates, _ = ops.lstm(x, h0, h0, lstm.weight_ih_l0, lstm.weight_hh_l0,
                                     lstm.bias_ih_l0, lstm.bias_hh_l0, None, None, None, False)
        return y, gates


def test_saved_activations_are_refused_by_name():
    with pytest.raises(ExportError, match="saved gate activations of rnnlab::lstm"):
        to_onnx(GateLeak(), (torch.randn(6, 3, 4),))


@pytest.mark.parametrize(("shape", "what"), [((5, 1, 4), "batch"), ((1, 3, 4), "time")])
def test_size_one_example_is_refused_rather_than_frozen(shape, what):
    with pytest.raises(ExportError, match=f"the {what} dimension .* was fixed to 1"):
        to_onnx(GRU(4, 5), (torch.randn(*shape),))


def test_static_export_on_request():
    proto = to_onnx(GRU(4, 5), (torch.randn(1, 3, 4),), dynamic=False).model_proto
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 4]


def test_bad_arguments():
    with pytest.raises(TypeError, match="example_inputs must be a tuple"):
        to_onnx(GRU(4, 5), torch.randn(6, 3, 4))
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        to_onnx(lambda x: x, (torch.randn(6, 3, 4),))

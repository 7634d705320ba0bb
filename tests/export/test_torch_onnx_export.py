"""The ecosystem's entry points, unchanged: plain ``torch.export.export`` and plain
``torch.onnx.export(..., dynamo=True)`` (no translation table) on models with rnnlab layers
(those exported through a Scan in a model of their own, ``ScanZoo``).

One model (``Zoo``) holds a covering set of rnnlab layers and cells side by side on one
input — every family and variant (RNN tanh/relu, LSTM, GRU reset after/before),
uni- and bidirectional, single and stacked, time-major and batch_first, with and without
lengths — so that one export (which costs seconds) checks them all. Each export has
dynamic batch and time and runs at other shapes against the eager model.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.export import Dim

from helpers import OUT_TOL, assert_rel_close
from rnnlab.export import registration
from rnnlab.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, MinGRU, MinLSTM, RNNCell

pytestmark = [
    pytest.mark.filterwarnings(  # torch.export's own deprecation noise
        "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
    ),
    pytest.mark.filterwarnings(  # torch.onnx's notice that lengths' batch axis is x's batch
        "ignore:# The axis name. batch will not be used:UserWarning"
    ),
]

I, H = 4, 5
EXPORT_SHAPE = (6, 3)  # (T, B): at least 2 and distinct, so neither is specialised
RUN_SHAPES = [(9, 2), (1, 5), (4, 1)]
ONNX_TOLERANCE = 1e-5  # as tests/export/test_onnx_export.py


class Zoo(nn.Module):
    """rnnlab layers and cells side by side on one time-major input; returns every output
    and final state. ``WITH_LENGTHS`` names the layers that get per-sample lengths."""

    WITH_LENGTHS = ("lstm_bi_l2_bf", "gru_before_bi_l2", "rnn_relu_l2")

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict({
            "lstm_bi_l2_bf": LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True),
            "lstm": LSTM(I, H),
            "gru": GRU(I, H),
            "gru_before_bi_l2": GRU(I, H, num_layers=2, bidirectional=True, reset_after=False),
            "rnn_tanh_bi_bf": RNN(I, H, bidirectional=True, batch_first=True),
            "rnn_relu_l2": RNN(I, H, num_layers=2, nonlinearity="relu"),
        })
        self.cells = nn.ModuleList([
            RNNCell(I, H), RNNCell(I, H, nonlinearity="relu"), LSTMCell(I, H),
            GRUCell(I, H), GRUCell(I, H, reset_after=False),
        ])

    def forward(self, x, lengths):
        outputs = []
        for name, layer in self.layers.items():
            given = x.transpose(0, 1) if layer.batch_first else x
            y, state = layer(given, lengths=lengths if name in self.WITH_LENGTHS else None)
            outputs += [y, *(state if isinstance(state, tuple) else (state,))]
        for cell in self.cells:
            state = cell(x[0])
            outputs += list(state) if isinstance(state, tuple) else [state]
        return tuple(outputs)


def _inputs(T: int, B: int, generator: torch.Generator):
    x = torch.randn(T, B, I, generator=generator)
    lengths = torch.randint(1, T + 1, (B,), generator=generator)
    lengths[0] = T
    return x, lengths


def _dynamic_shapes():
    time, batch = Dim("time"), Dim("batch")
    return {"x": {0: time, 1: batch}, "lengths": {0: batch}}


@pytest.fixture(scope="module")
def zoo():
    torch.manual_seed(0)
    return Zoo().eval()


def test_torch_export_with_dynamic_batch_and_time(zoo):
    generator = torch.Generator().manual_seed(1)
    exported = torch.export.export(zoo, _inputs(*EXPORT_SHAPE, generator),
                                   dynamic_shapes=_dynamic_shapes())
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {"rnnlab.lstm.default", "rnnlab.gru.default", "rnnlab.rnn.default"} <= targets
    assert not any(".lstm." in t or ".gru." in t or "rnn_" in t
                   for t in targets if t.startswith("aten.")), targets
    module = exported.module()
    for T, B in RUN_SHAPES:
        x, lengths = _inputs(T, B, generator)
        with torch.no_grad():
            got, want = module(x, lengths), zoo(x, lengths)
        assert len(got) == len(want)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_rel_close(g, w, OUT_TOL[torch.float32], f"output {k} at (T, B) = ({T}, {B})")


def _expected_nodes(zoo: Zoo) -> dict[str, int]:
    """Native recurrent nodes per kind: one per layer and direction, one per cell."""
    counts: dict[str, int] = {}

    def add(kind, n=1):
        counts[kind] = counts.get(kind, 0) + n

    for name, layer in zoo.layers.items():
        n = layer.num_layers * layer.num_directions
        add(_kind(layer), n)
        if name in Zoo.WITH_LENGTHS:
            add("sequence_lens", n)
    for cell in zoo.cells:
        add(_kind(cell))
    return counts


def _kind(module) -> str:
    """LSTM, GRU/linear_before_reset=0|1, RNN/Tanh|Relu: what the ONNX node must say."""
    if isinstance(module, (LSTM, LSTMCell)):
        return "LSTM"
    if isinstance(module, (GRU, GRUCell)):
        return f"GRU/linear_before_reset={int(module.reset_after)}"
    return f"RNN/{module.nonlinearity.capitalize()}"


def _node_kinds(graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("LSTM", "GRU", "RNN"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kind = node.op_type
        if kind == "GRU":
            kind += f"/linear_before_reset={attrs.get('linear_before_reset', 0)}"
        if kind == "RNN":
            kind += "/" + attrs.get("activations", [b"Tanh"])[0].decode()
        counts[kind] = counts.get(kind, 0) + 1
        if len(node.input) > 4 and node.input[4]:
            counts["sequence_lens"] = counts.get("sequence_lens", 0) + 1
    return counts


def test_plain_torch_onnx_export_gives_native_nodes(zoo):
    """No custom_translation_table: the translations come from the registration."""
    generator = torch.Generator().manual_seed(2)
    program = torch.onnx.export(zoo, _inputs(*EXPORT_SHAPE, generator), dynamo=True,
                                dynamic_shapes=_dynamic_shapes(), verbose=False)
    proto = program.model_proto
    op_types = {n.op_type for n in proto.graph.node}
    op_types |= {n.op_type for f in proto.functions for n in f.node}
    assert not {"Loop", "Scan", "If"} & op_types, op_types
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}, "custom-domain node left"
    assert _node_kinds(proto.graph) == _expected_nodes(zoo)
    x_dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in x_dims] == [True, True, False], x_dims

    assert_runs_like(proto, zoo, generator)


def assert_runs_like(proto, model, generator) -> None:
    """The ONNX model in onnxruntime == ``model`` at RUN_SHAPES, every output."""
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for T, B in RUN_SHAPES:
        x, lengths = _inputs(T, B, generator)
        got = session.run(None, dict(zip(names, [x.numpy(), lengths.numpy()], strict=True)))
        with torch.no_grad():
            want = model(x, lengths)
        assert len(got) == len(want)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            np.testing.assert_allclose(g, w.numpy(), rtol=ONNX_TOLERANCE, atol=ONNX_TOLERANCE,
                                       err_msg=f"output {k} differs at (T, B) = ({T}, {B})")


class ScanZoo(nn.Module):
    """The layers exported through a Scan side by side: the min layers (stacked
    bidirectional with lengths, batch_first), the layer-normalised LSTM and GRU and their
    cells, a bidirectional GRU with zoneout and lengths."""

    def __init__(self):
        super().__init__()
        self.mingru = MinGRU(I, H, num_layers=2, bidirectional=True)
        self.minlstm = MinLSTM(I, H, batch_first=True)
        self.lnlstm = LSTM(I, H, layer_norm=True, bidirectional=True)
        self.lngru = GRU(I, H, layer_norm=True)
        self.zoneout = GRU(I, H, zoneout=0.375, bidirectional=True)
        self.cells = nn.ModuleList([LSTMCell(I, H, layer_norm=True),
                                    GRUCell(I, H, layer_norm=True)])

    def forward(self, x, lengths):
        y_mingru, h_mingru = self.mingru(x, lengths=lengths)
        y_minlstm, h_minlstm = self.minlstm(x.transpose(0, 1))
        y_lnlstm, (h_lnlstm, c_lnlstm) = self.lnlstm(x, lengths=lengths)
        y_lngru, h_lngru = self.lngru(x)
        y_zoneout, h_zoneout = self.zoneout(x, lengths=lengths)
        h_cell, c_cell = self.cells[0](x[0])
        return (y_mingru, h_mingru, y_minlstm, h_minlstm, y_lnlstm, h_lnlstm, c_lnlstm,
                y_lngru, h_lngru, y_zoneout, h_zoneout, h_cell, c_cell, self.cells[1](x[0]))


def test_plain_torch_onnx_export_of_the_scan_layers():
    """No custom_translation_table: a MatMul and one Scan per layer and direction, the
    scan functions inlined (no custom domain, no local function), equal at new shapes."""
    torch.manual_seed(0)
    model = ScanZoo().eval()
    generator = torch.Generator().manual_seed(3)
    program = torch.onnx.export(model, _inputs(*EXPORT_SHAPE, generator), dynamo=True,
                                dynamic_shapes=_dynamic_shapes(), verbose=False)
    proto = program.model_proto
    op_types = [n.op_type for n in proto.graph.node]
    assert op_types.count("Scan") == op_types.count("MatMul") == 12, op_types
    assert not {"Loop", "If", "LSTM", "GRU", "RNN"} & set(op_types), op_types
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}, "custom-domain node left"
    assert not proto.functions, [f.name for f in proto.functions]
    assert_runs_like(proto, model, generator)


def test_import_rnnlab_nn_registers_lazily():
    """A fresh process that imports only rnnlab.nn does not import onnxscript; loading
    torchlib's op table, as the exporter does before reading the registry, registers the
    translations; rnnlab's own ONNX module imports cleanly after that, and before."""
    code = textwrap.dedent("""
        import sys
        import rnnlab.nn
        assert "onnxscript" not in sys.modules, "import rnnlab.nn imported onnxscript"
        import rnnlab.export.onnx  # imports onnxscript, not torchlib's op table
        from onnxscript.function_libs.torch_lib.registration import default_registry
        assert "rnnlab::lstm" not in default_registry, "registered before the trigger"
        from onnxscript.function_libs.torch_lib import ops
        missing = [n for n in ("rnnlab::lstm", "rnnlab::gru", "rnnlab::rnn",
                               "rnnlab::mingru", "rnnlab::minlstm", "rnnlab::lnlstm",
                               "rnnlab::lngru", "rnnlab::lstm_masked", "rnnlab::gru_masked")
                   if n not in default_registry]
        assert not missing, missing
    """)
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_registration_is_idempotent():
    from onnxscript.function_libs.torch_lib.registration import default_registry

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second registration would warn
        registration.register_translations()
        registration.register_translations()
    assert len(default_registry["rnnlab::gru"].overloads) == 1


def test_after_import_hook_runs_once_after_the_module(tmp_path, monkeypatch):
    (tmp_path / "hooked_module_13c.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []

    def callback():
        seen.append(sys.modules["hooked_module_13c"].VALUE)

    hook = registration.AfterImport("hooked_module_13c", callback)
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    monkeypatch.delitem(sys.modules, "hooked_module_13c", raising=False)
    import hooked_module_13c

    assert seen == [42], "the callback runs once, after the module's code"
    assert hook not in sys.meta_path
    assert type(hooked_module_13c.__loader__).__name__ == "SourceFileLoader"
    monkeypatch.delitem(sys.modules, "hooked_module_13c")
    import hooked_module_13c  # a second import: no second call

    assert seen == [42]


def test_failed_registration_warns_instead_of_breaking_the_import(monkeypatch):
    def fail():
        raise ImportError("no registry here")

    monkeypatch.setattr(registration, "register_translations", fail)
    with pytest.warns(RuntimeWarning, match=r"could not register .*no registry here.*to_onnx"):
        registration._register_or_warn()

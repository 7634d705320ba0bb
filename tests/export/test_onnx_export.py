"""ONNX export: native recurrent nodes (the min and layer-normalised cells and zoneout:
standard nodes and one Scan per layer and direction), numerically equal to the torch module
at new shapes.

Each case exports an rnnlab layer once at (T, B) = (5, 3) and runs the ONNX model in
onnxruntime at four other (T, B) shapes, comparing outputs and final states with the
layer itself. The configurations are a covering sample of the product family × layers ×
directions × batch_first × bias × lengths × initial state: every pair of factor values
appears, and every family meets every (bidirectional, lengths) combination — the
reverse-direction-over-valid-span case that matters most. The layers exported through a
Scan (min cells, layer-normalised LSTM and GRU, zoneout) have their own sample of the same
factors.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from helpers import OUT_TOL, assert_rel_close
from rnnlab.backends._layer_norm import EPS
from rnnlab.export import to_onnx
from rnnlab.nn import GRU, LSTM, RNN, MinGRU, MinLSTM
from rnnlab.reference import minlstm_forward

pytestmark = pytest.mark.filterwarnings(  # torch.export's own deprecation noise
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
)

I, H = 4, 6
EXPORT_SHAPE = (5, 3)
RUN_SHAPES = [(8, 2), (1, 4), (13, 1), (3, 7)]
TOLERANCE = 1e-5

FAMILIES = ["lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu"]
FACTORS = {
    "family": FAMILIES,
    "num_layers": [1, 2, 3],
    "bidirectional": [False, True],
    "batch_first": [False, True],
    "bias": [False, True],
    "lengths": [False, True],
    "initial_state": [False, True],
}
STRENGTHS = [*itertools.combinations(FACTORS, 2), ("family", "bidirectional", "lengths")]
MIN_FAMILIES = ["mingru", "minlstm"]
# exported as standard ops and a Scan, which reads these many sequences
SCANNED = {"mingru": 2, "minlstm": 2, "lnlstm": 2, "lngru": 2, "lstm_zoneout": 4,
           "gru_zoneout": 3}
SCAN_FAMILIES = list(SCANNED)
SCAN_FACTORS = {**FACTORS, "family": SCAN_FAMILIES, "num_layers": [1, 2]}


def _covering_sample(factors: dict = FACTORS) -> list[dict]:
    """Greedy covering array: repeatedly take the configuration that covers most of the
    still-uncovered value combinations of STRENGTHS (ties: first in a fixed shuffled
    order)."""
    names = list(factors)
    candidates = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*factors.values())
    ]
    random.Random(7).shuffle(candidates)

    def combos(config):
        return {(group, tuple(config[f] for f in group)) for group in STRENGTHS}

    uncovered = set().union(*(combos(c) for c in candidates))
    chosen = []
    while uncovered:
        best = max(candidates, key=lambda c: len(combos(c) & uncovered))
        chosen.append(best)
        uncovered -= combos(best)
    return chosen


CASES = _covering_sample()
SCAN_CASES = _covering_sample(SCAN_FACTORS)


def _case_id(case: dict) -> str:
    parts = [case["family"], f"L{case['num_layers']}"]
    parts += [name for name in ("bidirectional", "batch_first", "lengths", "initial_state")
              if case[name]]
    parts += [] if case["bias"] else ["nobias"]
    return "-".join(parts)


def make_layer(case: dict):
    common = dict(num_layers=case["num_layers"], bias=case["bias"],
                  batch_first=case["batch_first"], bidirectional=case["bidirectional"])
    family = case["family"]
    if family in MIN_FAMILIES:
        return (MinGRU if family == "mingru" else MinLSTM)(I, H, **common)
    # zoneout with recurrent dropout, which eval turns off; shares exact in float32, as
    # torch's exporter writes the fill value of the eval masks (k = p) in float32
    if family == "lstm_zoneout":
        return LSTM(I, H, zoneout=(0.25, 0.625), recurrent_dropout=0.2, **common)
    if family == "gru_zoneout":
        return GRU(I, H, zoneout=0.375, **common)
    if family.startswith("ln"):
        layer = (LSTM if family == "lnlstm" else GRU)(I, H, layer_norm=True, **common)
        with torch.no_grad():  # gains and β away from their initial 1 and 0
            for name, param in layer.named_parameters():
                if name.startswith(("gamma", "beta")):
                    param.copy_(1 + 0.5 * torch.randn_like(param))
        return layer
    if family == "lstm":
        return LSTM(I, H, **common)
    if family.startswith("gru"):
        return GRU(I, H, reset_after=family == "gru", **common)
    return RNN(I, H, nonlinearity=family.split("_")[1], **common)


def make_inputs(layer, case: dict, T: int, B: int, generator: torch.Generator):
    """(args, kwargs) for one call of ``layer`` at (T, B)."""
    shape = (B, T, I) if case["batch_first"] else (T, B, I)
    args = [torch.randn(shape, generator=generator)]
    if case["initial_state"]:
        LD = layer.num_layers * layer.num_directions
        h0 = torch.randn(LD, B, H, generator=generator)
        if layer.family == "lstm":
            args.append((h0, torch.randn(LD, B, H, generator=generator)))
        else:
            args.append(h0)
    kwargs = {}
    if case["lengths"]:
        if T % 2 == 0:  # no sample fills the padded batch: max(lengths) < T
            lengths = torch.randint(1, T, (B,), generator=generator)
        else:  # one full-length sample, the others anywhere in [1, T]
            lengths = torch.randint(1, T + 1, (B,), generator=generator)
            lengths[0] = T
        kwargs["lengths"] = lengths
    return tuple(args), kwargs


def flat_inputs(args, kwargs) -> list[np.ndarray]:
    flat = []
    for value in [*args, *kwargs.values()]:
        flat.extend(value if isinstance(value, tuple) else [value])
    return [v.numpy() for v in flat]


def flat_outputs(result) -> list[np.ndarray]:
    output, state = result
    states = list(state) if isinstance(state, tuple) else [state]
    return [t.detach().numpy() for t in (output, *states)]


def assert_matches_module(model_proto, layer, case, seed: int = 0) -> None:
    """Run the ONNX model at RUN_SHAPES in onnxruntime and compare with ``layer``."""
    session = ort.InferenceSession(model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    generator = torch.Generator().manual_seed(seed)
    for T, B in RUN_SHAPES:
        args, kwargs = make_inputs(layer, case, T, B, generator)
        feeds = flat_inputs(args, kwargs)
        assert len(feeds) == len(names), (names, len(feeds))
        got = session.run(None, dict(zip(names, feeds, strict=True)))
        with torch.no_grad():
            want = flat_outputs(layer(*args, **kwargs))
        for name, g, w in zip(("output", "h_n", "c_n")[: len(want)], got, want, strict=True):
            np.testing.assert_allclose(
                g, w, rtol=TOLERANCE, atol=TOLERANCE,
                err_msg=f"{name} differs at (T, B) = ({T}, {B})",
            )


def assert_native_graph(model_proto, layer, case) -> None:
    """One native recurrent node per layer, right attributes, symbolic batch and time."""
    graph = model_proto.graph
    op_types = [n.op_type for n in graph.node]
    for func in model_proto.functions:
        op_types += [n.op_type for n in func.node]
    assert not {"Loop", "Scan", "If"} & set(op_types), op_types
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}, "custom-domain node left"
    recurrent = [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    expected_type = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[layer.family]
    assert [n.op_type for n in recurrent] == [expected_type] * layer.num_layers, op_types
    for node in recurrent:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        direction = attrs.get("direction", b"forward").decode()
        assert direction == ("bidirectional" if case["bidirectional"] else "forward")
        assert attrs["hidden_size"] == H
        has_lengths = len(node.input) > 4 and node.input[4] != ""
        assert has_lengths == case["lengths"], "sequence_lens must come from lengths"
        if node.op_type == "GRU":
            want = 1 if layer.reset_after else 0
            assert attrs.get("linear_before_reset", 0) == want, (
                f"GRU linear_before_reset={attrs.get('linear_before_reset', 0)}, expected "
                f"{want} for reset_after={layer.reset_after}"
            )
    assert_symbolic_input(graph, case)


def assert_symbolic_input(graph, case) -> None:
    """The input's batch and time are named, its features fixed; so are the output's."""
    x = graph.input[0].type.tensor_type.shape.dim
    dims = [d.dim_param or d.dim_value for d in x]
    want = ["batch", "time", I] if case["batch_first"] else ["time", "batch", I]
    assert dims == want, f"input dims {dims}, expected {want}"
    out = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert set(out[:2]) == {"batch", "time"}, f"output dims {out}"


def export(layer, case, tmp_path):
    generator = torch.Generator().manual_seed(1234)
    args, kwargs = make_inputs(layer, case, *EXPORT_SHAPE, generator)
    path = tmp_path / "model.onnx"
    to_onnx(layer, args, path, example_kwargs=kwargs)
    return onnx.load(path)


@pytest.mark.parametrize("case", CASES + SCAN_CASES,
                         ids=[_case_id(c) for c in CASES + SCAN_CASES])
def test_export_matches_module(case, tmp_path):
    torch.manual_seed(0)
    layer = make_layer(case).eval()
    model_proto = export(layer, case, tmp_path)
    if case["family"] in SCAN_FAMILIES:
        assert_scan_graph(model_proto, layer, case)
    else:
        assert_native_graph(model_proto, layer, case)
    assert_matches_module(model_proto, layer, case)


@pytest.mark.parametrize(("cases", "families", "sizes"),
                         [(CASES, FAMILIES, (15, 30)), (SCAN_CASES, SCAN_FAMILIES, (10, 24))],
                         ids=["native", "scan"])
def test_sample_covers_the_matrix(cases, families, sizes):
    assert sizes[0] <= len(cases) <= sizes[1]
    for family in families:
        for bidirectional, lengths in itertools.product([False, True], repeat=2):
            assert any(
                c["family"] == family and c["bidirectional"] == bidirectional
                and c["lengths"] == lengths for c in cases
            )


def test_negative_control_wrong_reset_convention_is_caught(tmp_path):
    """Flip the GRU's linear_before_reset to ONNX's default 0 (the bug of PyTorch's
    exporters): both the numeric comparison and the graph check must fail."""
    case = dict(family="gru", num_layers=2, bidirectional=True, batch_first=False,
                bias=True, lengths=True, initial_state=True)
    torch.manual_seed(0)
    layer = make_layer(case).eval()
    with torch.no_grad():  # larger recurrent weights make the reset placement matter more
        for name, param in layer.named_parameters():
            if name.startswith("weight_hh") or name.startswith("bias_hh"):
                param.mul_(3)
    model_proto = export(layer, case, tmp_path)
    assert_native_graph(model_proto, layer, case)
    assert_matches_module(model_proto, layer, case)

    for node in model_proto.graph.node:
        if node.op_type == "GRU":
            for attr in node.attribute:
                if attr.name == "linear_before_reset":
                    attr.i = 0
    with pytest.raises(AssertionError, match="linear_before_reset"):
        assert_native_graph(model_proto, layer, case)
    with pytest.raises(AssertionError, match="differs"):
        assert_matches_module(model_proto, layer, case)


# --------------------------------------------------------------------------- the min cells


def _scans(model_proto) -> list[dict]:
    """The attributes of each Scan node, in graph order."""
    return [{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            for node in model_proto.graph.node if node.op_type == "Scan"]


def assert_scan_graph(model_proto, layer, case) -> None:
    """Standard operators only, per layer and direction one MatMul (every step's input
    projection) and one forward Scan: a min cell's body is h_t = a_t ⊙ h_{t-1} + b_t (a Mul
    and an Add), the others' their step, with the recurrent MatMul (and normalisations).
    Symbolic batch and time."""
    graph = model_proto.graph
    assert not model_proto.functions, "a function was left in the model"
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}, "custom-domain node left"
    op_types = [n.op_type for n in graph.node]
    assert not {"Loop", "If", "LSTM", "GRU", "RNN"} & set(op_types), op_types
    runs = layer.num_layers * layer.num_directions
    assert op_types.count("MatMul") == runs, op_types
    scans = _scans(model_proto)
    assert len(scans) == runs, op_types
    for attrs in scans:
        body = sorted(n.op_type for n in attrs["body"].node)
        assert attrs["num_scan_inputs"] == SCANNED[case["family"]]
        if case["family"] in MIN_FAMILIES:
            assert body == ["Add", "Identity", "Mul"], body
        else:
            norms = {"lnlstm": 2, "lngru": 1}.get(case["family"], 0)
            assert body.count("MatMul") == 1 and body.count("LayerNormalization") == norms
        assert not {"scan_input_directions", "scan_output_directions"} & set(attrs)
    # a reverse direction flips its scanned inputs and its states in time
    assert ("Slice" in op_types) == case["bidirectional"], op_types
    norms = runs if case["family"].startswith("ln") else 0  # every step's input term's
    assert op_types.count("LayerNormalization") == norms, op_types
    assert_symbolic_input(graph, case)


def test_layer_norm_bodies_use_the_cells_epsilon():
    """The Scan bodies rely on LayerNormalization's default ε being the cells' own."""
    default = onnx.defs.get_schema("LayerNormalization").attributes["epsilon"].default_value
    assert np.float32(default.f) == np.float32(EPS)


@pytest.mark.parametrize("family", SCAN_FAMILIES)
def test_scan_export_in_float64_is_exact(family):
    """The same graphs in float64: equal to the layer to float64 rounding (1e-10)."""
    torch.manual_seed(0)
    case = dict(family=family, num_layers=2, bidirectional=True, batch_first=False,
                bias=True)
    layer = make_layer(case).double().eval()
    x, lengths = torch.randn(5, 3, I, dtype=torch.float64), torch.tensor([5, 2, 4])
    proto = to_onnx(layer, (x,), example_kwargs={"lengths": lengths}).model_proto
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for T, B in RUN_SHAPES:
        x = torch.randn(T, B, I, dtype=torch.float64) * 10
        lengths = torch.randint(1, T + 1, (B,))
        got = session.run(None, {"input": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want = layer(x, lengths=lengths)
        for name, g, w in zip(("output", "h_n", "c_n"), got, flat_outputs(want), strict=False):
            assert_rel_close(g, w, OUT_TOL[torch.float64], f"{name} at (T, B) = ({T}, {B})")


def test_min_export_is_stable_over_long_sequences():
    """T = 4096 in float32 (the Scan is the loop's own sums): the graph stays within the
    float32 tolerance of the float64 reference, where a log-space scan would not."""
    torch.manual_seed(0)
    layer = MinLSTM(I, H).eval()
    proto = to_onnx(layer, (torch.randn(5, 3, I), torch.randn(1, 3, H))).model_proto
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x, h0 = torch.randn(4096, 2, I), torch.randn(2, H)
    names = [i.name for i in session.get_inputs()]
    got_y, got_h = session.run(None, dict(zip(names, [x.numpy(), h0[None].numpy()],
                                              strict=True)))
    w_ih, b_ih = (p.detach().double().numpy() for p in (layer.weight_ih_l0, layer.bias_ih_l0))
    y, h_n, _ = minlstm_forward(x.double().numpy(), h0.double().numpy(), w_ih, b_ih)
    assert_rel_close(got_y, y, OUT_TOL[torch.float32], "output at T = 4096")
    assert_rel_close(got_h[0], h_n, OUT_TOL[torch.float32], "h_n at T = 4096")


def test_min_negative_control_swapped_coefficients_are_caught(tmp_path):
    """Feed the Scans b_t as a_t and a_t as b_t: the numbers must differ."""
    case = dict(family="minlstm", num_layers=2, bidirectional=True, batch_first=False,
                bias=True, lengths=True, initial_state=True)
    torch.manual_seed(0)
    layer = make_layer(case).eval()
    model_proto = export(layer, case, tmp_path)
    assert_scan_graph(model_proto, layer, case)
    assert_matches_module(model_proto, layer, case)

    for node in model_proto.graph.node:
        if node.op_type == "Scan":
            node.input[1], node.input[2] = node.input[2], node.input[1]
    with pytest.raises(AssertionError, match="differs"):
        assert_matches_module(model_proto, layer, case)

"""``rnnlab export RUN --onnx FILE``: a trained run's model, checked in onnxruntime."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from rnnlab import train
from rnnlab.cli import main
from rnnlab.inspect import load_run


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "gru"
    train(task="classify", cell="gru", hidden=6, layers=2, steps=3, eval_every=3,
          run_dir=run, progress="none", task_options={"length": 9})
    return run


def test_export_writes_a_native_graph_equal_to_the_model(gru_run, tmp_path):
    path = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, ["export", str(gru_run), "--onnx", str(path), "--lengths"])
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("GRU") == 2 and "Loop" not in ops and "Scan" not in ops
    model, _ = load_run(gru_run)
    x = torch.randn(4, 13, model.config.input_size)
    lengths = torch.tensor([13, 1, 7, 4])
    with torch.no_grad():
        want = model(x, lengths=lengths)[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
    assert abs(got - want).max() <= 1e-5 * max(abs(want).max(), 1.0)


@pytest.fixture(scope="module", params=["mingru", "lnlstm"])
def scan_run(request, tmp_path_factory):
    """A run of a cell that ONNX export writes as standard operators and a Scan."""
    run = tmp_path_factory.mktemp("runs") / request.param
    train(task="classify", cell=request.param, hidden=6, layers=2, steps=3, eval_every=3,
          run_dir=run, progress="none", task_options={"length": 9})
    return run


def test_export_of_a_scan_cell_run_is_a_scan_graph_equal_to_the_model(scan_run, tmp_path):
    path = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, ["export", str(scan_run), "--onnx", str(path),
                                       "--lengths"])
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(path))
    model, _ = load_run(scan_run)
    ops = [n.op_type for n in proto.graph.node]
    runs = model.rnn.num_layers * model.rnn.num_directions
    assert ops.count("Scan") == runs and not {"LSTM", "GRU", "Loop"} & set(ops), ops
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for B, T in [(4, 13), (2, 30)]:
        x = torch.randn(B, T, model.config.input_size)
        lengths = torch.randint(1, T + 1, (B,))
        with torch.no_grad():
            want = model(x, lengths=lengths)[0].numpy()
        got = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})[0]
        assert abs(got - want).max() <= 1e-5 * max(abs(want).max(), 1.0)


def test_export_never_overwrites_without_force(gru_run, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("precious")
    result = CliRunner().invoke(main, ["export", str(gru_run), "--onnx", str(path)])
    assert result.exit_code == 2
    assert "already exists; pass --force" in result.output
    assert path.read_text() == "precious"


def test_export_of_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert "is not an rnnlab run folder" in result.output

"""MinGRU/MinLSTM in the tools: parameter counting and matching, `rnnlab compare --cells`
with its report, and the weight converters' refusal."""

import json

import pytest
from click.testing import CliRunner

import rnnlab.nn as rnn
from rnnlab.cli import main
from rnnlab.compare import CompareConfig
from rnnlab.tasks import ModelConfig, SequenceModel, get_task
from rnnlab.training import TrainConfig


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_parameter_count_is_the_models(cell):
    config = ModelConfig(cell, input_size=7, hidden_size=5, output_size=3, num_layers=2,
                         bidirectional=True, embed_dim=4)
    model = SequenceModel(config)
    assert isinstance(model.rnn, rnn.MinGRU if cell == "mingru" else rnn.MinLSTM)
    assert config.num_parameters() == sum(p.numel() for p in model.parameters())


def test_widths_are_matched_by_parameter_count():
    task = get_task("adding", {"length": 8})
    train = TrainConfig(task="adding", task_options={"length": 8})
    widths = CompareConfig(train=train, cells=("lstm", "gru", "mingru", "minlstm"),
                           params=20000).widths(task)
    assert widths["mingru"] > widths["minlstm"] > widths["gru"] > widths["lstm"]
    for cell, h in widths.items():
        assert abs(task.model_config(cell, h).num_parameters() - 20000) < 0.03 * 20000


@pytest.mark.slow  # ~10 s on a quiet machine, mostly the report's figures
def test_cli_compare_runs_the_min_cells(tmp_path):
    out = tmp_path / "c"
    result = CliRunner().invoke(main, [
        "compare", "--task", "adding", "-o", "length=8", "-o", "val_size=16",
        "--cells", "mingru,minlstm", "--steps", "4", "--eval-every", "2",
        "--batch-size", "4", "--hidden", "6", "--progress", "none", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["cell"] for c in metrics["cells"]] == ["mingru", "minlstm"]
    assert (out / "gates_minlstm.png").is_file()
    bad = CliRunner().invoke(main, ["compare", "--cells", "lstm,mingrux", "--out", str(out)])
    assert bad.exit_code == 2
    assert "unknown cell 'mingrux'; expected a comma list of rnn,lstm,gru,mingru,minlstm" in (
        bad.output)


def test_converters_refuse_min_layers_by_name():
    """(ONNX export of the min layers: tests/export/test_onnx_export.py.)"""
    from rnnlab.export.convert import to_keras

    with pytest.raises(TypeError, match=r"must be an rnnlab\.nn RNN/LSTM/GRU.*got MinGRU"):
        to_keras(rnn.MinGRU(3, 4))

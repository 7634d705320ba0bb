"""The layer-normalised LSTM in the tools: parameter counting and matching, and
`rnnlab compare --cells lstm,lnlstm` with its gate figure in the report."""

import json

import pytest
from click.testing import CliRunner

import rnnlab.nn as rnn
from rnnlab.cli import main
from rnnlab.compare import CompareConfig
from rnnlab.tasks import ModelConfig, SequenceModel, get_task
from rnnlab.training import TrainConfig


def test_parameter_count_is_the_models_and_widths_are_matched():
    config = ModelConfig("lnlstm", input_size=7, hidden_size=5, output_size=3, num_layers=2,
                         bidirectional=True, embed_dim=4)
    model = SequenceModel(config)
    assert isinstance(model.rnn, rnn.LSTM) and model.rnn.layer_norm
    assert config.num_parameters() == sum(p.numel() for p in model.parameters())
    task = get_task("adding", {"length": 8})
    train = TrainConfig(task="adding", task_options={"length": 8})
    widths = CompareConfig(train=train, cells=("lstm", "lnlstm"), params=20000).widths(task)
    assert widths["lnlstm"] < widths["lstm"]  # its 10·H normalisation parameters per layer
    for cell, h in widths.items():
        assert abs(task.model_config(cell, h).num_parameters() - 20000) < 0.03 * 20000


@pytest.mark.slow  # ~10 s on a quiet machine, mostly the report's figures
def test_cli_compare_runs_lstm_and_lnlstm(tmp_path):
    out = tmp_path / "c"
    result = CliRunner().invoke(main, [
        "compare", "--task", "adding", "-o", "length=8", "-o", "val_size=16",
        "--cells", "lstm,lnlstm", "--steps", "4", "--eval-every", "2",
        "--batch-size", "4", "--hidden", "6", "--progress", "none", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["cell"] for c in metrics["cells"]] == ["lstm", "lnlstm"]
    assert (out / "gates_lnlstm.png").is_file()
    assert "<h2>LNLSTM gates on a sample sequence</h2>" in (out / "report.html").read_text()

"""The layer-normalised cells in the tools: parameter counting and matching, and
`rnnlab compare --cells lnlstm,lngru` with their gate figures in the report."""

import json

import pytest
from click.testing import CliRunner

import rnnlab.nn as rnn
from rnnlab.cli import main
from rnnlab.compare import CompareConfig
from rnnlab.report.plots import CELL_TITLES
from rnnlab.tasks import ModelConfig, SequenceModel, get_task
from rnnlab.training import TrainConfig


def test_parameter_count_is_the_models_and_widths_are_matched():
    for cell, layer in (("lnlstm", rnn.LSTM), ("lngru", rnn.GRU)):
        config = ModelConfig(cell, input_size=7, hidden_size=5, output_size=3, num_layers=2,
                             bidirectional=True, embed_dim=4)
        model = SequenceModel(config)
        assert isinstance(model.rnn, layer) and model.rnn.layer_norm
        assert config.num_parameters() == sum(p.numel() for p in model.parameters())
    task = get_task("adding", {"length": 8})
    train = TrainConfig(task="adding", task_options={"length": 8})
    cells = ("lstm", "lnlstm", "gru", "lngru")
    widths = CompareConfig(train=train, cells=cells, params=20000).widths(task)
    assert widths["lnlstm"] < widths["lstm"]  # their normalisation parameters counted
    assert widths["lngru"] < widths["gru"]
    for cell, h in widths.items():
        assert abs(task.model_config(cell, h).num_parameters() - 20000) < 0.03 * 20000


@pytest.mark.slow  # ~10 s on a quiet machine, mostly the report's figures
def test_cli_compare_runs_the_layer_normalised_cells(tmp_path):
    out = tmp_path / "c"
    result = CliRunner().invoke(main, [
        "compare", "--task", "adding", "-o", "length=8", "-o", "val_size=16",
        "--cells", "lnlstm,lngru", "--steps", "4", "--eval-every", "2",
        "--batch-size", "4", "--hidden", "6", "--progress", "none", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["cell"] for c in metrics["cells"]] == ["lnlstm", "lngru"]
    page = (out / "report.html").read_text()
    for cell in ("lnlstm", "lngru"):
        assert (out / f"gates_{cell}.png").is_file()
        assert f"<h2>{CELL_TITLES[cell]} gates on a sample sequence</h2>" in page

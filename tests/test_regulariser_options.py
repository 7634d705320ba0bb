"""The regularisers through training: ``rnnlab train``'s --weight-drop,
--recurrent-dropout, --zoneout reach the run's config, its model and the layer."""

import json

from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.runs import load_model, open_train_run

TINY = ["--task", "adding", "-o", "length=5", "-o", "val_size=8", "--hidden", "4", "--steps",
        "2", "--eval-every", "1", "--batch-size", "4", "--progress", "none"]


def test_train_flags_reach_the_layer(tmp_path):
    out = tmp_path / "run"
    flags = ["--weight-drop", "0.2", "--recurrent-dropout", "0.3", "--zoneout", "0.1"]
    result = CliRunner().invoke(main, ["train", "--cell", "gru", *TINY, *flags, "--out", out])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    given = (config["weight_drop"], config["recurrent_dropout"], config["zoneout"])
    assert given == (0.2, 0.3, 0.1)
    layer = load_model(open_train_run(out)).rnn
    assert (layer.weight_drop, layer.recurrent_dropout, layer.zoneout) == (0.2, 0.3, 0.1)


def test_a_bad_p_is_one_error_line(tmp_path):
    result = CliRunner().invoke(main, ["train", *TINY, "--zoneout", "1", "--out", tmp_path / "r"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["Error: zoneout must be < 1, got 1.0"]


def test_layer_normalised_cells_refuse_recurrence_changing_regularisers_before_writing(tmp_path):
    """lnlstm/lngru take --weight-drop only: train and compare say so in one line, exit 2,
    and write nothing."""
    out = tmp_path / "r"
    runs = [["train", "--cell", "lngru", *TINY, "--recurrent-dropout", "0.1", "--out", out],
            ["compare", "--cells", "gru,lnlstm", *TINY, "--zoneout", "0.2", "--out", out]]
    for args, cell, options in zip(runs, ("lngru", "lnlstm"), ("0.1, zoneout=0.0",
                                                                 "0.0, zoneout=0.2"), strict=True):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            f"Error: the cell {cell} (layer-normalised) takes weight_drop but not (yet) "
            f"recurrent_dropout or zoneout; got recurrent_dropout={options}"
        ]
        assert not out.exists()

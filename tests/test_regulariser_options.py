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


def test_cells_refuse_regularisers_they_do_not_take_before_writing(tmp_path):
    """lnlstm/lngru take --weight-drop only, rnn/mingru/minlstm none: train and compare say
    so in one line naming the cell and what was given, exit 2, and write nothing."""
    out = tmp_path / "r"
    ln = "takes weight_drop but not (yet) recurrent_dropout or zoneout"
    other = "takes none of weight_drop, recurrent_dropout, zoneout"
    cases = [
        (["train", "--cell", "lngru", "--recurrent-dropout", "0.1"],
         f"the cell lngru (layer-normalised) {ln}; got recurrent_dropout=0.1"),
        (["compare", "--cells", "gru,lnlstm", "--zoneout", "0.2"],
         f"the cell lnlstm (layer-normalised) {ln}; got zoneout=0.2"),
        (["train", "--cell", "rnn", "--weight-drop", "0.2"],
         f"the cell rnn (not an LSTM or GRU) {other}; got weight_drop=0.2"),
        (["train", "--cell", "mingru", "--weight-drop", "0.3", "--zoneout", "0.1"],
         f"the cell mingru (not an LSTM or GRU) {other}; got weight_drop=0.3, zoneout=0.1"),
        (["train", "--cell", "minlstm", "--recurrent-dropout", "0.1"],
         f"the cell minlstm (not an LSTM or GRU) {other}; got recurrent_dropout=0.1"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, [*args, *TINY, "--out", out])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [f"Error: {message}"]
        assert not out.exists()


def test_a_comparison_trains_the_cells_that_take_no_regulariser_without_it(tmp_path):
    """compare's default cells with --zoneout: the LSTM and GRU get it, the RNN trains
    without (its config says so), and a config stored before the refusal reads back."""
    out = tmp_path / "c"
    result = CliRunner().invoke(main, ["compare", *TINY, "--zoneout", "0.2", "--weight-drop",
                                       "0.1", "--out", out])
    assert result.exit_code == 0, result.output
    ran = {c: json.loads((out / f"{c}-seed0" / "config.json").read_text())
           for c in ("rnn", "lstm", "gru")}
    assert [(ran[c]["zoneout"], ran[c]["weight_drop"]) for c in ("rnn", "lstm", "gru")] == [
        (0.0, 0.0), (0.2, 0.1), (0.2, 0.1)]
    assert load_model(open_train_run(out / "lstm-seed0")).rnn.zoneout == 0.2
    stored = out / "rnn-seed0" / "config.json"  # as an older version wrote it
    stored.write_text(json.dumps({**ran["rnn"], "zoneout": 0.2}))
    assert open_train_run(out / "rnn-seed0").config.zoneout == 0.0

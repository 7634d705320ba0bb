"""compare --sweep: one comparison per value, resumable, and its metric-vs-value report."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlab._io import InputError
from rnnlab.cli import main
from rnnlab.compare import CompareConfig
from rnnlab.report.plots import save_sweep
from rnnlab.sweep import SweepConfig, sweep
from rnnlab.training import TrainConfig

TINY = CompareConfig(train=TrainConfig(task="adding", task_options={"length": 4, "val_size": 16},
                                       steps=2, batch_size=4, eval_every=2),
                     cells=("gru",))


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    config = SweepConfig("length", (4, 6), TINY)
    first = sweep(config, tmp_path / "s", progress="none")
    kept = tmp_path / "s" / "length=4" / "gru-seed0" / "model.safetensors"
    before = (kept.stat().st_mtime_ns, kept.read_bytes())
    # as if stopped during the second value: its folder and the sweep's metrics are missing
    for path in sorted((tmp_path / "s" / "length=6").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "s" / "length=6").rmdir()
    (tmp_path / "s" / "metrics.json").unlink()
    again = sweep(config, tmp_path / "s", resume=True, progress="none")
    assert (kept.stat().st_mtime_ns, kept.read_bytes()) == before  # the first value kept
    best = [[p["cells"]["gru"]["best"] for p in m["points"]] for m in (first, again)]
    assert best[0] == best[1]  # the second value trained again, identically
    assert [p["folder"] for p in again["points"]] == ["length=4", "length=6"]
    saved = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert saved["kind"] == "sweep" and (tmp_path / "s" / "sweep.png").is_file()
    with pytest.raises(InputError, match="it was started with --sweep length=4,6"):
        sweep(SweepConfig("length", (4, 8), TINY), tmp_path / "s", resume=True,
              progress="none")


def test_the_sweep_plot_draws_each_cell_and_the_chance_level_from_metrics(tmp_path):
    metrics = {"key": "delay", "task": "copy", "metric": "xent", "baseline": "chance",
               "target": None, "higher_is_better": False, "cells": ["rnn", "lstm"],
               "points": [{"value": v, "chance": c, "cells": {
                   "rnn": {"best": r}, "lstm": {"best": lstm}}}
                   for v, c, r, lstm in [(10, 0.5, 0.1, 0.01), (100, 0.2, 0.19, 0.02),
                                         (1000, 0.05, 0.05, None)]]}
    fig = save_sweep(tmp_path / "sweep.png", metrics)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["chance"].get_ydata(), [0.5, 0.2, 0.05])
    np.testing.assert_array_equal(lines["rnn"].get_xdata(), [10, 100, 1000])
    np.testing.assert_array_equal(lines["lstm"].get_ydata(), [0.01, 0.02, np.nan])
    assert fig.axes[0].get_xscale() == "log" and (tmp_path / "sweep.png").stat().st_size > 1000


@pytest.mark.parametrize(("sweep_arg", "message"), [
    ("foo=1,2", "cannot sweep 'foo' for task adding; sweepable keys: length, val_size, "
                "val_seed, hidden, layers"),
    ("length=5,x", "task option length expects an integer, got 'x'"),
    ("length=5,5", "--sweep length: a value is repeated"),
    ("hidden=0,4", "hidden must be a positive integer, got 0"),
    ("length", "--sweep 'length' is not KEY=V1,V2,..."),
])
def test_a_bad_sweep_is_one_line(tmp_path, sweep_arg, message):
    result = CliRunner().invoke(main, ["compare", "--sweep", sweep_arg, "--steps", "1",
                                       "--out", str(tmp_path / "s"), "--progress", "none"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "--sweep", "length=4,6", "--resume"], "config.json' is damaged: not valid JSON"),
    (["inspect"], "is a sweep (each of its <key>=<value> folders is a comparison); choose "
                  "one of them"),
    (["export", "--onnx", "m.onnx"], "is a sweep (each of its <key>=<value> folders"),
])
def test_commands_on_a_damaged_or_sweep_folder_are_one_line(tmp_path, args, message):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "run.json").write_text('{"kind": "sweep", "rnnlab": "0"}')
    (folder / "config.json").write_text("{not json")
    where = ["--out", str(folder)] if args[0] == "compare" else [str(folder)]
    argv = [args[0], *where, *args[1:]]
    result = CliRunner().invoke(main, [*argv, "--progress", "none"] if args[0] == "compare"
                                else argv)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert (folder / "config.json").read_text() == "{not json"

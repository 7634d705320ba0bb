"""compare(): fairness (same budget and data, matched sizes), aggregation, the report files."""

import base64
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from rnnlab._io import InputError
from rnnlab.cli import main
from rnnlab.compare import DEFAULT_TRAIN, CompareConfig, compare, format_table
from rnnlab.tasks import get_task
from rnnlab.training import TrainConfig, train

TINY = TrainConfig(task="adding", task_options={"length": 8, "val_size": 32}, steps=20,
                   batch_size=8, eval_every=10, checkpoint_every=10)


def test_compare_trains_every_cell_and_writes_the_report(tmp_path):
    result = compare(CompareConfig(train=TINY, seeds=2), tmp_path / "c", progress="none")
    run = tmp_path / "c"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "adding" and metrics["metric"] == "mse"
    assert metrics["chance"] == pytest.approx(1 / 6)
    assert [c["cell"] for c in metrics["cells"]] == ["rnn", "lstm", "gru"]
    for cell in metrics["cells"]:
        assert {"cell", "params", "best", "seconds", "best_spread", "seconds_per_step",
                "sequences_per_second", "steps_to_target", "hidden"} <= set(cell)
        assert len(cell["runs"]) == 2 and [r["seed"] for r in cell["runs"]] == [0, 1]
        assert all(r["steps"] == 20 for r in cell["runs"])  # same budget
        assert cell["best"] == pytest.approx(sum(cell["best_per_seed"]) / 2)
    params = [c["params"] for c in metrics["cells"]]
    assert max(params) - min(params) < 0.03 * max(params)  # matched sizes
    assert set(metrics["gradients"]) == {"rnn", "lstm", "gru"}
    for g in metrics["gradients"].values():
        assert len(g["init"]) == len(g["trained"]) == 8
    for name in ("curves.png", "gradients.png", "gates_rnn.png", "gates_lstm.png",
                 "gates_gru.png", "report.html"):
        assert (run / name).stat().st_size > 1000, name
    for cell in ("rnn", "lstm", "gru"):
        for seed in (0, 1):
            assert (run / f"{cell}-seed{seed}" / "model.safetensors").is_file()
    html = (run / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert len(images) == 5 and all(i.startswith("data:image/png;base64,") for i in images)
    assert base64.b64decode(images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in html.split("<pre>")[0]  # nothing fetched from elsewhere
    assert "<table>" in html and html.count("<tr>") == 4
    assert result.table().splitlines()[0].startswith("task adding: mse (chance 0.1667")


def test_all_cells_see_the_same_data(tmp_path):
    result = compare(CompareConfig(train=TINY, cells=("lstm", "gru")), tmp_path / "c",
                     progress="none")
    tasks = {id(r.task) for runs in result.runs.values() for r in runs}
    assert len(tasks) == 1  # one task object: one validation split for all
    assert [r.config.seed for runs in result.runs.values() for r in runs] == [0, 0]


def test_keyword_options_start_from_the_task_defaults(tmp_path):
    c = CompareConfig.from_options(task="charlm", cells=("gru",), steps=7, seeds=2)
    assert c.cells == ("gru",) and c.seeds == 2
    assert c.train.steps == 7 and c.train.bptt == 100 and c.train.schedule == "cosine"
    assert CompareConfig.from_options() == CompareConfig()
    with pytest.raises(InputError, match="compare has no option 'cell'"):
        CompareConfig.from_options(cell="gru")
    result = compare(
        run_dir=tmp_path / "c", task="copy", task_options={"delay": 2, "val_size": 8},
        cells=("lstm",), steps=3, batch_size=4, hidden=4, progress="none", report=False,
    )
    assert result.metrics["task"] == "copy" and result.runs["lstm"][0].steps == 3


def test_fixed_width_and_matched_widths():
    task = get_task("adding", {"length": 8})
    fixed = CompareConfig(train=TINY, hidden=12).widths(task)
    assert fixed == {"rnn": 12, "lstm": 12, "gru": 12}
    matched = CompareConfig(train=TINY, params=5000).widths(task)
    assert matched["rnn"] > matched["gru"] > matched["lstm"]
    for cell, h in matched.items():
        n = task.model_config(cell, h).num_parameters()
        assert abs(n - 5000) < 0.05 * 5000


def test_default_is_a_long_range_adding_problem():
    assert DEFAULT_TRAIN.task == "adding" and DEFAULT_TRAIN.task_options["length"] >= 50
    assert DEFAULT_TRAIN.forget_bias == 1.0
    assert CompareConfig().cells == ("rnn", "lstm", "gru")


def test_bad_compare_options():
    with pytest.raises(InputError, match="unknown cell 'tcn'"):
        CompareConfig(cells=("rnn", "tcn"))
    with pytest.raises(InputError, match="seeds must be an integer >= 1"):
        CompareConfig(seeds=0)
    with pytest.raises(InputError, match=r"either hidden .* or params"):
        CompareConfig(hidden=4, params=100)
    with pytest.raises(InputError, match="twice"):
        CompareConfig(cells=("gru", "gru"))


def test_format_table_lists_every_cell():
    metrics = {"task": "adding", "metric": "mse", "chance": 1 / 6, "target": 1 / 60, "cells": [
        {"cell": "gru", "hidden": 4, "params": 100, "best": 0.01, "best_spread": 0.002,
         "ratio_to_chance": 0.06, "seconds_per_step": 0.002, "sequences_per_second": 900.0,
         "steps_to_target": [100, None]}]}
    lines = format_table(metrics).splitlines()
    assert len(lines) == 3 and lines[2].split()[:4] == ["gru", "4", "100", "0.01"]
    assert "100/-" in lines[2] and "2.0ms" in lines[2]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), a


def test_the_cli_and_the_api_give_the_same_numbers_bit_for_bit(tmp_path):
    """Identical arguments, one source of defaults and thread policy: identical results."""
    torch.set_num_threads(2)  # the API must leave the caller's setting as it found it
    cli = CliRunner().invoke(main, [
        "compare", "--task", "copy", "-o", "delay=3", "-o", "val_size=16", "--cells", "rnn,gru",
        "--steps", "4", "--eval-every", "2", "--progress", "none", "--out", str(tmp_path / "cli"),
    ])
    assert cli.exit_code == 0, cli.output
    assert torch.get_num_threads() == 2
    api = compare(run_dir=tmp_path / "api", task="copy", task_options={"delay": 3, "val_size": 16},
                  cells=("rnn", "gru"), steps=4, eval_every=2, progress="none",
                  report=False)  # the report only draws: the CLI's is enough
    assert torch.get_num_threads() == 2
    cli_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    for mine, theirs in zip(cli_metrics["cells"], api.metrics["cells"], strict=True):
        assert mine["hidden"] == theirs["hidden"]
        assert [h["val"] for h in mine["runs"][0]["history"]] == [
            h["val"] for h in theirs["runs"][0]["history"]]
        folder = mine["runs"][0]["dir"]
        _same_weights(tmp_path / "cli" / folder, tmp_path / "api" / folder)
    # train: charlm's own defaults (cosine schedule, bptt 100) on both sides
    text = tmp_path / "t.txt"
    text.write_text("abcabd abcabe " * 60)
    cli = CliRunner().invoke(main, [
        "train", "--task", "charlm", "--data", str(text), "-o", "eval_columns=2", "--hidden", "8",
        "--batch-size", "2", "--steps", "3", "--no-report", "--progress", "none", "--out",
        str(tmp_path / "lm-cli")])
    assert cli.exit_code == 0, cli.output
    run = train(run_dir=tmp_path / "lm-api", task="charlm", hidden=8, batch_size=2, steps=3,
                task_options={"path": str(text), "eval_columns": 2}, progress="none")
    assert run.config == TrainConfig.from_dict(
        json.loads((tmp_path / "lm-cli" / "config.json").read_text()))
    _same_weights(tmp_path / "lm-cli", tmp_path / "lm-api")
    with pytest.raises(InputError, match="threads must be an integer >= 1, got 0"):
        compare(run_dir=tmp_path / "t", cells=("gru",), steps=1, threads=0)

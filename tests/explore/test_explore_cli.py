"""rnnlab explore through click: the page is written; bad input is one line, exit 2."""

import json
import math
import shutil

import pytest
from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.explore import page as page_module
from rnnlab.explore.trace import QUANTITIES
from rnnlab.training import train


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecast")
    (root / "series.csv").write_text("day,load\n" + "".join(
        f"{k},{(k * 7) % 23}\n" for k in range(120)))
    train(run_dir=root / "run", task="forecast",
          task_options={"path": str(root / "series.csv"), "window": 8, "horizon": 2},
          cell="gru", hidden=8, steps=2, batch_size=4, eval_every=2, progress="none")
    return root / "run"


def _fails(args, *expected):
    result = CliRunner().invoke(main, ["explore", *map(str, args)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for text in expected:
        assert text in lines[0], lines[0]


def test_writes_the_page_and_refuses_to_overwrite_a_named_file(compare_run, tmp_path):
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["explore", str(compare_run), "--out", str(out),
                                       "--connect-steps", "5"])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>")
    _fails([compare_run, "--out", out], "already exists", "--force")


def test_bad_input_is_one_line(charlm_run, compare_run, tmp_path, monkeypatch):
    _fails([tmp_path], "not an rnnlab run folder")
    _fails([charlm_run, "--data", tmp_path / "missing.txt"], "does not exist")
    (tmp_path / "binary.txt").write_bytes(b"ab\x00cd" * 20)
    _fails([charlm_run, "--data", tmp_path / "binary.txt"], "looks binary")
    _fails([charlm_run, "--text", "ab\u00e9\u00e9"], "never saw", "é")
    (tmp_path / "series.csv").write_text("a,b\n1,2\n3,4\n")
    _fails([compare_run, "--data", tmp_path / "series.csv"], "--data is for charlm")
    _fails([compare_run, "--text", "abc"], "--text is for charlm")
    damaged = tmp_path / "damaged"
    shutil.copytree(charlm_run, damaged)
    (damaged / "model.json").write_text("{")
    _fails([damaged], "model.json", "damaged")
    moved = tmp_path / "moved"
    shutil.copytree(charlm_run, moved)
    (charlm_run.parent / "text.txt").rename(tmp_path / "text.txt")
    try:
        _fails([moved], "cannot be rebuilt", "--data")
    finally:
        (tmp_path / "text.txt").rename(charlm_run.parent / "text.txt")
    monkeypatch.setattr(page_module, "EMBED_LIMIT", 100)
    _fails([compare_run, "--connect-steps", "0"], "MiB", "--serve")


@pytest.mark.parametrize("steps", [1, -3])
def test_too_few_steps(compare_run, steps):
    _fails([compare_run, "--steps", steps], "at least 2")


def test_a_forecast_run_reads_a_csv_with_its_columns(forecast_run, tmp_path):
    (tmp_path / "good.csv").write_text("day,load\n" + "".join(f"{k},{k % 5}\n" for k in range(30)))
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["explore", str(forecast_run), "--data",
                                       str(tmp_path / "good.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "good.csv" in out.read_text()
    (tmp_path / "other.csv").write_text("temperature\n1\n2\n3\n")
    _fails([forecast_run, "--data", tmp_path / "other.csv"], "'day' is not in", "other.csv")
    (tmp_path / "words.csv").write_text("day,load\n1,1\n2,high\n3,3\n")
    _fails([forecast_run, "--data", tmp_path / "words.csv"], "non-numeric")


@pytest.mark.parametrize(("cell", "options"), [
    ("lnlstm", {}), ("lngru", {"bidirectional": True, "layers": 2}), ("mingru", {}),
    ("minlstm", {"layers": 2}), ("lstm", {"zoneout": 0.2}), ("gru", {"zoneout": 0.2}),
], ids=["lnlstm", "lngru-both-ways", "mingru", "minlstm", "lstm-zoneout", "gru-zoneout"])
def test_a_run_of_every_cell_is_explored(tmp_path, cell, options):
    """Every cell compare trains, and the zoneout runs, are traced: the page is written
    with the cell's quantities for every layer and direction, and nothing is left out."""
    train(run_dir=tmp_path / "run", cell=cell, task="adding",
          task_options={"length": 12, "val_size": 4}, steps=2, batch_size=4, eval_every=2,
          hidden=6, progress="none", **options)
    result = CliRunner().invoke(main, ["explore", str(tmp_path / "run"), "--connect-steps",
                                       "4", "--window", "4"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "run" / "explore.html").read_text()
    meta = json.loads(page.split('id="meta">', 1)[1].split("</script>", 1)[0])
    assert not any(note.startswith("not shown") for note in meta["notes"]), meta["notes"]
    (model,) = meta["models"]
    assert model["cell"] == cell
    directions = 2 if options.get("bidirectional") else 1
    assert [layer["quantities"] for layer in model["layers"]] == [
        list(QUANTITIES[cell])] * (options.get("layers", 1) * directions)


def test_a_log_change_forecast_run_reads_a_csv_as_it_was_trained(tmp_path):
    """transform=log: the CSV is scaled in log units; target=change: the model reads the
    input minus its last row, as it read its training windows."""
    from rnnlab.explore.inputs import explore_input
    from rnnlab.runs import open_train_run

    rows = [100 * 1.01 ** k for k in range(120)]
    (tmp_path / "s.csv").write_text("day,load\n" + "".join(f"{k},{v}\n" for k, v in
                                                           enumerate(rows)))
    train(run_dir=tmp_path / "run", task="forecast",
          task_options={"path": str(tmp_path / "s.csv"), "columns": "load", "window": 8,
                        "horizon": 2, "transform": "log", "target": "change"},
          cell="gru", hidden=8, steps=2, batch_size=4, eval_every=2, progress="none")
    run = open_train_run(tmp_path / "run")
    mean, std = (run.task["artefacts"][k][0] for k in ("mean", "std"))
    given = explore_input(run, data=tmp_path / "s.csv", steps=30)
    expected = [(math.log(v) - math.log(rows[29])) / std for v in rows[:30]]
    assert given.x[0, :, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert "minus its last row" in given.source
    assert mean == pytest.approx(sum(math.log(v) for v in rows[:96]) / 96)

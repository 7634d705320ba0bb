"""Built-in data sets: each loads through its task, its licence is noted, bad names fail."""

import numpy as np
import pytest
from click.testing import CliRunner

from rnnlab.cli import main
from rnnlab.tasks import get_task
from rnnlab.tasks.datasets import AIRPASSENGERS, DATASETS, SOURCES


def test_airpassengers_is_box_and_jenkins_series_g():
    assert len(AIRPASSENGERS) == 144 and sum(AIRPASSENGERS) == 40363
    assert AIRPASSENGERS[:3] == (112, 118, 132) and AIRPASSENGERS[-3:] == (461, 390, 432)
    assert max(AIRPASSENGERS) == 622 and DATASETS["airpassengers"].season == 12


@pytest.mark.parametrize(("name", "rows", "first"), [
    ("airpassengers", 144, 112.0), ("sunspots", 309, 5.0), ("nile", 100, 1120.0),
    ("co2", 526, 316.1),
])
def test_forecast_sets_load_by_name(name, rows, first):
    columns, values = DATASETS[name].load()
    assert values.shape == (rows, 1) and len(columns) == 1
    assert np.isfinite(values).all() and values[0, 0] == pytest.approx(first, abs=0.5)
    task = get_task("forecast", {"path": name, "window": 8, "horizon": 4})
    assert len(task.train_z) + len(task.val_z) == rows and task.columns == columns


def test_digits_are_64_step_sequences_of_ten_classes():
    task = get_task("classify", {"path": "digits"})
    assert task.classes == [str(k) for k in range(10)]
    assert task.train["x"].shape[1:] == (64, 1)
    assert len(task.train["y"]) + len(task.val["y"]) == 1797


def test_every_set_names_its_source_and_licence_in_rnnlab_tasks():
    shown = " ".join(CliRunner().invoke(main, ["tasks", "forecast", "classify"]).output.split())
    for name, dataset in DATASETS.items():
        assert dataset.source and dataset.licence and name in SOURCES
        assert f"{name}:" in shown
    assert shown.count("licence: public domain") == 4 and "CC BY 4.0" in shown


@pytest.mark.parametrize(("task", "data", "message"), [
    ("forecast", "nosuch", "unknown data set 'nosuch' (and no such file); built-in data sets "
                           "for forecast: airpassengers, sunspots, co2, nile"),
    ("forecast", "digits", "'digits' is for the classify task, not forecast"),
    ("classify", "sunspots", "built-in data sets for classify: digits"),
])
def test_a_bad_data_set_name_is_one_line(tmp_path, task, data, message):
    result = CliRunner().invoke(main, ["train", "--task", task, "--data", data, "--steps", "1",
                                       "--out", str(tmp_path / "run"), "--progress", "none"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output

"""forecast's transform=log and target=change: what the model reads and predicts, the
inverse back to data units (backtest and `rnnlab predict` alike), and bad values."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rnnlab._io import InputError
from rnnlab.cli import main
from rnnlab.tasks import get_task
from rnnlab.tasks.forecast import forecast_next, predict_windows


class Recorder(torch.nn.Module):
    """A stand-in model: keeps what it read, answers a fixed (N, horizon·C) output."""

    def __init__(self, answer: torch.Tensor):
        super().__init__()
        self.answer, self.read = answer, None

    def forward(self, x):
        self.read = x.clone()
        return self.answer.expand(len(x), -1), None


def test_change_reads_the_window_minus_its_last_row_and_adds_it_back():
    x = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]]])  # (1, W=3, C=2)
    model = Recorder(torch.tensor([[0.5, -1.0, 1.5, -2.0]]))  # horizon 2, C = 2
    out = predict_windows(model, x, 2, "change")
    assert torch.equal(model.read, x - x[:, -1:])
    assert torch.equal(out, torch.tensor([[[4.5, 39.0], [5.5, 38.0]]]))
    out = predict_windows(model, x, 2, "level")
    assert torch.equal(model.read, x) and torch.equal(out, model.answer.view(1, 2, 2))


def _series(tmp_path, values):
    path = tmp_path / "s.csv"
    path.write_text("v\n" + "".join(f"{v}\n" for v in values))
    return str(path)


def test_log_normalises_the_log_and_forecasts_in_data_units(tmp_path):
    values = 100.0 * 1.02 ** np.arange(60)  # growth that multiplies: a line in log units
    options = {"path": _series(tmp_path, values), "window": 6, "horizon": 3,
               "val_fraction": 0.25, "transform": "log", "target": "change"}
    task = get_task("forecast", options)
    assert task.mean[0] == pytest.approx(np.log(values[:45]).mean())
    assert task.std[0] == pytest.approx(np.log(values[:45]).std())
    # a model that predicts the log series' constant step continues the growth exactly
    step = np.log(1.02) / task.std[0]
    model = Recorder(torch.tensor([[step, 2 * step, 3 * step]], dtype=torch.float32))
    view = task.extras(model, torch.Generator())["forecast_view"]
    truth = np.asarray(view["truth"])
    assert np.allclose(view["forecast"], truth, rtol=1e-4)
    assert view["scores"]["mape"] < 0.01
    # `rnnlab predict`'s path: the rows after the series, from its last window
    run_options = {**task.options_dict(), "window": 6, "horizon": 3}
    ahead = forecast_next(model, task.artefacts(), run_options, values[:, None])
    assert np.allclose(ahead[:, 0], values[-1] * 1.02 ** np.arange(1, 4), rtol=1e-4)


def test_bad_transform_target_and_non_positive_log_are_one_error(tmp_path):
    path = _series(tmp_path, np.arange(40.0))  # starts at 0
    with pytest.raises(InputError, match=r"forecast transform must be one of none, log, "
                                         r"got 'sqrt'"):
        get_task("forecast", {"path": path, "window": 4, "horizon": 2, "transform": "sqrt"})
    with pytest.raises(InputError, match=r"forecast target must be one of level, change, "
                                         r"got 'delta'"):
        get_task("forecast", {"path": path, "window": 4, "horizon": 2, "target": "delta"})
    with pytest.raises(InputError, match=r"transform=log needs positive values; column 'v' "
                                         r"has 0"):
        get_task("forecast", {"path": path, "window": 4, "horizon": 2, "transform": "log"})


def test_train_and_predict_with_both_options_from_the_command_line(tmp_path):
    values = 50 + 10 * np.sin(np.arange(80) / 3) + np.arange(80)
    data = _series(tmp_path, values)
    out, pred = tmp_path / "run", tmp_path / "pred.csv"
    args = ["train", "--task", "forecast", "--data", data, "-o", "window=8", "-o", "horizon=3",
            "-o", "transform=log", "-o", "target=change", "--hidden", "4", "--steps", "3",
            "--eval-every", "3", "--batch-size", "4", "--progress", "none", "--out", out]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "task.json").read_text())["options"]
    assert (saved["transform"], saved["target"]) == ("log", "change")
    result = CliRunner().invoke(main, ["predict", str(out), "--out", str(pred)])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in pred.read_text().splitlines()[1:]]
    # data units (the log's inverse applied): near the series' last level of ≈ 130, far
    # from its log (≈ 4.9)
    assert len(rows) == 3 and all(0.5 * values[-1] < float(r[1]) < 2 * values[-1] for r in rows)

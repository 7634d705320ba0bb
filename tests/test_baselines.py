"""Classical forecasting baselines: hand-computed forecasts and scores, statsmodels' fits
on series whose continuation is known, failures reported, the backtest in the report."""

import numpy as np
import pytest

from rnnlab._io import InputError
from rnnlab.report.html import forecast_scores, forecast_verdict
from rnnlab.tasks import get_task
from rnnlab.tasks.baselines import (
    arima,
    backtest,
    holt_winters,
    naive,
    scores,
    seasonal_naive,
)

PATTERN = np.array([3.0, -1.0, 4.0, -2.0])  # a season of 4


def seasonal_series(n: int) -> np.ndarray:
    t = np.arange(n)
    return 50 + 0.5 * t + PATTERN[t % 4]


def test_naive_and_seasonal_naive_by_hand():
    history = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert naive(history, 3, 1).tolist() == [7.0, 7.0, 7.0]
    assert seasonal_naive(history, 5, 3).tolist() == [5.0, 6.0, 7.0, 5.0, 6.0]
    assert seasonal_naive(history, 2, 1).tolist() == [7.0, 7.0]


def test_scores_by_hand():
    truth = np.array([[10.0], [20.0]])
    forecast = np.array([[12.0], [16.0]])
    train = np.array([[1.0], [3.0], [2.0], [6.0]])  # seasonal naive (m = 2) errors: 1, 3
    s = scores(truth, forecast, train, season=2)
    assert s["mae"] == pytest.approx(3.0) and s["rmse"] == pytest.approx(np.sqrt(10.0))
    assert s["smape"] == pytest.approx(50 * (4 / 22 + 8 / 36))
    assert s["mase"] == pytest.approx(3.0 / 2.0)
    assert s["mape"] == pytest.approx(50 * (2 / 10 + 4 / 20))
    # MAPE skips a truth of 0 (sMAPE and the rest keep it); all zeros: not a number
    zero = scores(np.array([[0.0], [20.0]]), forecast, train, season=2)
    assert zero["mape"] == pytest.approx(100 * 4 / 20)
    assert np.isnan(scores(np.zeros((2, 1)), forecast, train, season=2)["mape"])


def test_statsmodels_fits_continue_a_trend_with_a_season():
    series = seasonal_series(48)
    forecast, _ = holt_winters(series[:40], 4, 4)
    np.testing.assert_allclose(forecast, series[40:44], rtol=0.01)
    forecast, _, fitted = arima(series[:40], 4, 4)
    np.testing.assert_allclose(forecast, series[40:44], rtol=0.01)
    forecast, _, again = arima(series[:44], 4, 4, fitted)  # the same parameters, filtered on
    np.testing.assert_array_equal(again.params, fitted.params)
    np.testing.assert_allclose(forecast, series[44:], rtol=0.01)


def test_a_failed_fit_is_reported_not_raised():
    values = seasonal_series(12)[:, None]  # 8 rows of history: too few for 4 seasons of 4
    found = backtest(values, [8], 4, season=6)
    assert found["holt-winters"]["forecast"] is None
    assert "Holt-Winters fit failed" in found["holt-winters"]["note"]
    assert found["seasonal naive"]["forecast"] == [[v] for v in values[2:6, 0]]


def test_backtest_origins_and_its_bad_inputs():
    task = get_task("forecast", {"path": "airpassengers", "window": 12, "horizon": 6,
                                 "val_fraction": 0.2, "backtest": 3})
    assert task.origins == [126, 132, 138] and task.season == 12
    with pytest.raises(InputError, match=r"backtest 5 needs 5 × horizon 6 = 30 held-out rows; "
                                         r"the validation split has 29"):
        get_task("forecast", {"path": "airpassengers", "val_fraction": 0.2, "backtest": 5})
    with pytest.raises(InputError, match=r"season 60 needs at least two seasons \(120 rows\) "
                                         r"of training data, got 115"):
        get_task("forecast", {"path": "airpassengers", "val_fraction": 0.2, "season": 60})


def test_airpassengers_alone_is_darts_protocol_and_given_options_win():
    task = get_task("forecast", {"path": "airpassengers"})
    assert (task.options.window, task.options.horizon) == (12, 6)
    assert task.n_train == 120 and task.origins == [120, 126, 132, 138]  # 1959-01 .. 1960-07
    assert get_task("forecast", {"path": "airpassengers", "window": 18}).options.window == 18
    with pytest.raises(InputError, match=r"144 rows are too few for window 48 \+ horizon 12: "
                                         r".*; the data set 'airpassengers' fits its defaults "
                                         r"\(window=12, horizon=6, val_fraction=0.1667\): "
                                         r"leave those options out"):
        get_task("forecast", {"path": "airpassengers", "window": 48, "horizon": 12})


def _view(mase: dict, baselines: dict) -> dict:
    return {"forecast_view": {
        "origins": [10, 12], "horizon": 2, "season": 1,
        "scores": {"mae": 1.0, "rmse": 1.0, "smape": 1.0, "mase": mase},
        "baselines": {n: {"scores": None if v is None else {
            "mae": 1.0, "rmse": 1.0, "smape": 1.0, "mase": v},
            "note": None if v is not None else "ARIMA fit failed: singular"}
            for n, v in baselines.items()}}}


def test_the_report_says_where_a_baseline_wins():
    base = {"naive": 1.2, "holt-winters": 0.5, "arima": None}
    metrics = {"extras": {"lstm": _view(0.8, base), "gru": _view(0.9, base)}}
    page = forecast_scores(metrics)
    assert "The best recurrent cell on MASE is lstm (0.8); holt-winters (0.5) beats it." in page
    assert "ARIMA fit failed: singular" in page and page.count("<tr>") == 6
    # no MAPE in the 4 rows made up here, and the failed arima's 5 scores
    assert "<th>MAPE %</th>" in page and page.count("<td>–</td>") == 4 + 5
    cells = {"lstm": {"mase": 0.4}}
    assert forecast_verdict(cells, _view(0.4, base)["forecast_view"]["baselines"]).endswith(
        "it beats every classical baseline.")


@pytest.mark.slow  # a whole comparison and report (statsmodels import included)
def test_a_forecast_comparison_reports_the_backtest(tmp_path):
    from rnnlab.compare import compare

    result = compare(task="forecast", cells=("gru",), steps=2, eval_every=2, batch_size=4,
                     task_options={"path": "nile", "window": 8, "horizon": 4},
                     run_dir=tmp_path / "run", progress="none")
    view = result.metrics["extras"]["gru"]["forecast_view"]
    assert view["origins"] == [80, 84, 88, 92, 96] and len(view["truth"]) == 20
    assert set(view["baselines"]) == {"naive", "seasonal naive", "holt-winters", "arima"}
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Backtest against classical baselines" in page
    assert (tmp_path / "run" / "forecast.png").is_file()

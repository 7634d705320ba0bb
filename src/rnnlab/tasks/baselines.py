"""Classical forecasting baselines and the scores they share with the recurrent cells.

The baselines a practitioner tries first, each forecasting ``horizon`` rows of one column
from the rows before a forecast origin (refit at every origin, like a rolling-origin
backtest):

* naive: the last value, repeated;
* seasonal naive: the value one season earlier;
* Holt-Winters: statsmodels' ``ExponentialSmoothing``, additive trend, and with a season
  a multiplicative seasonal component when every value is positive (else additive);
* ARIMA: statsmodels' ``ARIMA`` of the fixed order (1, 1, 1), with a season m the
  seasonal order (0, 1, 1, m) as in Box & Jenkins' airline model (no search by AIC:
  one small fixed order). Its parameters are estimated once, at the first origin; at
  later origins the longer history is filtered with them (statsmodels' ``apply``), since
  a seasonal fit costs seconds and a backtest has many origins.

Scores (``scores``): MAE and RMSE in data units, MAPE in percent (100 · mean |y − ŷ| / |y|
over the rows where y ≠ 0), sMAPE in percent (100 · mean 2|y − ŷ| / (|y| + |ŷ|)), and
MASE (MAE over the in-sample MAE of the seasonal naive forecast on the training rows;
seasonal period 1 without a season).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

NAMES = ("naive", "seasonal naive", "holt-winters", "arima")


class FitFailed(Exception):
    """A baseline could not be fitted; its message says why (reported, not raised)."""


def naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    return np.full(horizon, history[-1], dtype=np.float64)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    last_season = history[-season:]
    return np.asarray([last_season[h % season] for h in range(horizon)], dtype=np.float64)


def _statsmodels_fit(fit: Callable, what: str):
    """Run a statsmodels fit with its warnings kept to this call; a failure is FitFailed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fit()
        except ImportError:
            raise FitFailed("statsmodels is not installed (pip install 'rnnlab[baselines]')"
                            ) from None
        except Exception as err:  # statsmodels raises many kinds on data it cannot fit
            raise FitFailed(f"{what} fit failed: {type(err).__name__}: {err}") from None
    unconverged = [w for w in caught if "converge" in str(w.message).lower()]
    return result, (f"{what}: the optimiser did not converge" if unconverged else None)


def holt_winters(history: np.ndarray, horizon: int, season: int):
    def fit():
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        seasonal = None
        if season > 1:
            seasonal = "mul" if (history > 0).all() else "add"
        model = ExponentialSmoothing(history, trend="add", seasonal=seasonal,
                                     seasonal_periods=season if seasonal else None)
        return model.fit()

    result, note = _statsmodels_fit(fit, "Holt-Winters")
    return np.asarray(result.forecast(horizon), dtype=np.float64), note


def arima(history: np.ndarray, horizon: int, season: int, fitted=None):
    """ARIMA's forecast; with ``fitted`` (a previous call's result) its parameters are
    reused on this history instead of estimated again. Returns (forecast, note, result)."""
    def fit():
        from statsmodels.tsa.arima.model import ARIMA

        if fitted is not None:
            return fitted.apply(history)
        seasonal = (0, 1, 1, season) if season > 1 else (0, 0, 0, 0)
        return ARIMA(history, order=(1, 1, 1), seasonal_order=seasonal).fit()

    result, note = _statsmodels_fit(fit, "ARIMA")
    return np.asarray(result.forecast(horizon), dtype=np.float64), note, result


_SIMPLE = {"naive": naive, "seasonal naive": seasonal_naive}


def backtest(values: np.ndarray, origins: list[int], horizon: int, season: int) -> dict:
    """Every baseline's forecasts of ``values`` (rows, columns) at ``origins``.

    Returns {name: {"forecast": (len(origins)·horizon, columns) list or None,
    "note": text or None}}: a baseline whose fit failed at any origin has no forecast
    and its note says why.
    """
    out = {}
    for name in NAMES:
        blocks, notes, fitted = [], [], {}
        try:
            for o in origins:
                cols = []
                for c in range(values.shape[1]):
                    history = values[:o, c]
                    if name in _SIMPLE:
                        cols.append(_SIMPLE[name](history, horizon, season))
                        continue
                    if name == "arima":
                        forecast, note, fitted[c] = arima(history, horizon, season,
                                                          fitted.get(c))
                    else:
                        forecast, note = holt_winters(history, horizon, season)
                    if not np.isfinite(forecast).all():
                        raise FitFailed(f"{name} forecast a non-finite value")
                    cols.append(forecast)
                    notes += [note] if note and note not in notes else []
                blocks.append(np.stack(cols, axis=1))
        except FitFailed as failed:
            out[name] = {"forecast": None, "note": str(failed)}
            continue
        out[name] = {"forecast": np.concatenate(blocks).tolist(),
                     "note": "; ".join(notes) or None}
    return out


def scores(truth: np.ndarray, forecast: np.ndarray, train: np.ndarray, season: int) -> dict:
    """MAE, RMSE, MAPE (%), sMAPE (%) and MASE of ``forecast`` (rows, columns), means over
    columns (MAPE: over the entries whose truth is not 0; NaN where every one is).

    MASE scales each column's MAE by the in-sample MAE of the seasonal naive forecast
    over ``train`` (that column's training rows).
    """
    err = forecast - truth
    denom = np.abs(truth) + np.abs(forecast)
    ratio = np.divide(2 * np.abs(err), denom, out=np.zeros_like(err), where=denom > 0)
    scale = np.mean(np.abs(train[season:] - train[:-season]), axis=0)
    mae_cols = np.mean(np.abs(err), axis=0)
    mase = np.divide(mae_cols, scale, out=np.full_like(mae_cols, np.nan), where=scale > 0)
    nonzero = truth != 0
    mape = (float(100 * np.mean(np.abs(err[nonzero]) / np.abs(truth[nonzero])))
            if nonzero.any() else float("nan"))
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "mape": mape, "smape": float(100 * np.mean(ratio)), "mase": float(np.mean(mase))}

"""Multistep forecasting of numeric columns of a CSV (or a generated Mackey-Glass series).

Rows are split chronologically: the first ``1 − val_fraction`` train, the rest
validate. Each column (its log with ``transform=log``) is normalised with the mean and
standard deviation of the training rows only. A sample is ``window`` consecutive rows in
and the next ``horizon`` rows out; with ``target=change`` the model reads the window
minus its last row and predicts the horizon minus that row (the naive forecast plus a
learned change), so it can follow a level it never saw in training.

Metric: RMSE of the normalised values, i.e. in units of each column's standard
deviation (of its log, with ``transform=log``) over the training rows (so columns of
different units weigh alike; 1.0 is an error of one standard deviation). Baseline: the
naive forecast that repeats the last value seen, scored the same way.

The report adds a backtest over the held-out rows: at ``backtest`` origins, ``horizon``
rows apart and ending at the last row, each cell forecasts the next ``horizon`` rows from
the ``window`` before the origin, next to the classical baselines (naive, seasonal
naive, Holt-Winters, ARIMA; ``rnnlab.tasks.baselines``) refit on every row before it;
all are scored in data units by MAE, RMSE, MAPE, sMAPE and MASE.

Data (``--data FILE``): a CSV with a header row and one row per time step, oldest
first; every numeric column is forecast unless ``-o columns=a,b`` names some. Example:
``docs/examples/forecast.csv``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from rnnlab._io import InputError, numeric_columns, read_csv
from rnnlab.tasks.base import (
    Batch,
    Task,
    fraction,
    option,
    optional_text,
    positive,
    text_list,
)
from rnnlab.tasks.baselines import backtest, scores
from rnnlab.tasks.datasets import builtin, shown_options
from rnnlab.tasks.model import ModelConfig


def mackey_glass(n: int, tau: int = 17, beta: float = 0.2, gamma: float = 0.1,
                 power: float = 10.0, dt: float = 0.1, burn_in: int = 500) -> np.ndarray:
    """Mackey-Glass: dx/dt = βx(t−τ)/(1 + x(t−τ)^p) − γx, sampled at t = 0, 1, …"""
    sub = round(1 / dt)
    lag = tau * sub
    total = (n + burn_in) * sub
    x = np.full(total + lag, 1.2)
    for t in range(lag, total + lag - 1):
        delayed = x[t - lag]
        x[t + 1] = x[t] + dt * (beta * delayed / (1 + delayed**power) - gamma * x[t])
    return x[lag::sub][burn_in : burn_in + n]


TRANSFORMS = ("none", "log")
TARGETS = ("level", "change")


def to_model_units(values: np.ndarray, transform: str, columns: list[str]) -> np.ndarray:
    """The series as the model sees it before normalising: itself, or its log."""
    if transform != "log":
        return values
    bad = np.flatnonzero((values <= 0).any(axis=0))
    if bad.size:
        k = bad[0]
        raise InputError(f"forecast transform=log needs positive values; column "
                         f"{columns[k]!r} has {values[:, k].min():g}")
    return np.log(values)


def from_model_units(values: np.ndarray, transform: str) -> np.ndarray:
    """The inverse of :func:`to_model_units`."""
    return np.exp(values) if transform == "log" else values


def predict_windows(model, x: torch.Tensor, horizon: int, target: str) -> torch.Tensor:
    """The model's forecast (N, horizon, C) of windows x (N, window, C), in normalised
    units; ``target="change"``: the model reads x minus its last row and predicts the
    change from that row."""
    last = x[:, -1:, :] if target == "change" else torch.zeros(())
    out, _ = model(x - last)  # (N, horizon·C)
    return out.view(len(x), horizon, x.shape[2]) + last


@dataclass(frozen=True)
class ForecastOptions:
    path: str | None = option(
        None, "CSV with a header row, or a built-in data set's name (below); none: a "
              "generated Mackey-Glass series")
    columns: tuple = option(
        (), "columns to forecast, comma-separated (default: every numeric column)")
    window: int = option(48, "rows the model sees (a built-in data set may bring its own "
                             "window, horizon and val_fraction: see its defaults below)")
    horizon: int = option(12, "rows it predicts")
    val_fraction: float = option(0.2, "the last rows, held out for validation")
    series_length: int = option(3000, "rows of the generated series")
    max_val_windows: int = option(2000, "validation windows scored at most (evenly spaced)")
    season: int = option(
        0, "seasonal period of the seasonal naive, Holt-Winters and ARIMA baselines and of "
           "MASE (0: the built-in data set's own, else none)")
    backtest: int = option(
        0, "forecast origins of the report's backtest against the baselines, horizon rows "
           "apart and ending at the last row (0: as many as the validation rows hold, "
           "at most 10)")
    transform: str = option(
        "none", "none | log: model the log of the series (positive values only), for "
                "growth and seasons that multiply")
    target: str = option(
        "level", "level: the model reads and predicts the normalised values | change: it "
                 "reads the window minus its last row and predicts the change from it, so it "
                 "can follow a level unseen in training")

    def __post_init__(self):
        optional_text("forecast path", self.path)
        object.__setattr__(self, "columns", text_list("forecast columns", self.columns))
        positive("forecast window", self.window)
        positive("forecast horizon", self.horizon)
        fraction("forecast val_fraction", self.val_fraction, 0.0, 1.0)
        positive("forecast series_length", self.series_length, minimum=10)
        positive("forecast max_val_windows", self.max_val_windows)
        positive("forecast season", self.season, minimum=0)
        positive("forecast backtest", self.backtest, minimum=0)
        for name, value, allowed in (("transform", self.transform, TRANSFORMS),
                                     ("target", self.target, TARGETS)):
            if value not in allowed:
                raise InputError(f"forecast {name} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}")


def load_series(options: ForecastOptions) -> tuple[list[str], np.ndarray]:
    """The forecast columns and their values (rows, columns) as float64."""
    dataset = builtin(options.path, "forecast")
    if dataset is not None:
        names, values = dataset.load()
        if options.columns and list(options.columns) != names:
            raise InputError(f"the data set {dataset.name!r} has one column, {names[0]!r}")
        return names, values
    if options.path is None:
        names = list(options.columns) or ["mackey_glass"]
        if names != ["mackey_glass"]:
            raise InputError("the generated series has one column, 'mackey_glass'")
        return names, mackey_glass(options.series_length)[:, None]
    header, rows = read_csv(options.path)
    names = list(options.columns)
    if not names:
        names = [h for h, v in zip(header, rows[0], strict=True) if _is_number(v)]
        if not names:
            raise InputError(
                f"no column of {options.path!r} is numeric in its first data row; name the "
                "columns to forecast with -o columns=a,b"
            )
    return names, numeric_columns(header, rows, names, options.path)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class Forecast(Task):
    name = "forecast"
    metric = "rmse"
    baseline = "naive (last value)"
    metric_help = ("RMSE in units of each column's standard deviation (of its log with "
                   "transform=log) over the training rows")
    Options = ForecastOptions
    train_defaults: ClassVar[dict] = {
        "steps": 1500, "batch_size": 64, "lr": 3e-3, "eval_every": 100,
    }

    @classmethod
    def options_from_dict(cls, d: dict | None) -> ForecastOptions:
        """The options, a built-in data set's own (``Dataset.options``) where none is given."""
        if isinstance(d, dict) and isinstance(d.get("path"), str):
            dataset = builtin(d["path"], "forecast")
            if dataset is not None:
                d = {**dataset.options, **d}
        return super().options_from_dict(d)

    def __init__(self, options: ForecastOptions):
        super().__init__(options)
        self.columns, values = load_series(options)
        W, Hz = options.window, options.horizon
        n = len(values)
        n_train = round(n * (1 - options.val_fraction))
        need, val = W + Hz, options.val_fraction
        dataset = builtin(options.path, "forecast")
        if n_train < need or n - n_train < need:
            fix = (f"the data set {dataset.name!r} fits its defaults "
                   f"({shown_options(dataset.options)}): leave those options out"
                   if dataset is not None and dataset.options else
                   f"give at least {math.ceil(need / min(val, 1 - val))} rows or shrink the "
                   "window")
            raise InputError(
                f"{n} rows are too few for window {W} + horizon {Hz}: each split (train "
                f"{n_train} rows, validation {n - n_train}) needs at least {need}; {fix}"
            )
        self.season = options.season or (dataset.season if dataset is not None else 1)
        if self.season > 1 and n_train < 2 * self.season:
            raise InputError(
                f"season {self.season} needs at least two seasons ({2 * self.season} rows) of "
                f"training data, got {n_train}; give a longer series or a smaller season"
            )
        blocks = options.backtest or min((n - n_train) // Hz, 10)
        if blocks * Hz > n - n_train:
            raise InputError(
                f"backtest {blocks} needs {blocks} × horizon {Hz} = {blocks * Hz} held-out rows; "
                f"the validation split has {n - n_train}"
            )
        self.values, self.n_train = values, n_train
        self.origins = [n - (blocks - k) * Hz for k in range(blocks)]  # first rows forecast
        model_units = to_model_units(values, options.transform, self.columns)
        self.mean = model_units[:n_train].mean(axis=0)
        std = model_units[:n_train].std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        z = torch.tensor((model_units - self.mean) / self.std, dtype=torch.float32)  # (n, C)
        self.z = z
        self.train_z, self.val_z = z[:n_train], z[n_train:]
        starts = np.arange(len(self.val_z) - need + 1)
        stride = max(1, math.ceil(len(starts) / options.max_val_windows))
        self.val_x, self.val_y = self._windows(self.val_z, starts[::stride])
        naive = self.val_x[:, -1:, :].expand_as(self.val_y)
        self._chance = float(torch.sqrt(torch.mean((naive - self.val_y) ** 2)))
        self._naive_mae = float(torch.mean(torch.abs(naive - self.val_y)))

    def _windows(self, z: torch.Tensor, starts) -> tuple[torch.Tensor, torch.Tensor]:
        W, Hz = self.options.window, self.options.horizon
        x = torch.stack([z[s : s + W] for s in starts])  # (N, W, C)
        y = torch.stack([z[s + W : s + W + Hz] for s in starts])  # (N, Hz, C)
        return x, y

    @property
    def chance(self) -> float:
        return self._chance

    def model_config(self, cell: str, hidden_size: int, **layer_options) -> ModelConfig:
        C = len(self.columns)
        return ModelConfig(cell, C, hidden_size, self.options.horizon * C, readout="last",
                           **layer_options)

    def train_batch(self, step: int, config, generator: torch.Generator) -> Batch:
        high = len(self.train_z) - self.options.window - self.options.horizon + 1
        starts = torch.randint(0, high, (config.batch_size,), generator=generator).tolist()
        x, y = self._windows(self.train_z, starts)
        return {"x": x, "y": y}

    def _predict(self, model, x: torch.Tensor) -> torch.Tensor:
        return predict_windows(model, x, self.options.horizon, self.options.target)

    def loss(self, model, batch: Batch, carry=None):
        return torch.mean((self._predict(model, batch["x"]) - batch["y"]) ** 2), None

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        err = self._predict(model, self.val_x) - self.val_y
        return {"rmse": float(torch.sqrt(torch.mean(err**2))),
                "mae": float(torch.mean(torch.abs(err))), "naive_mae": self._naive_mae}

    def probe(self) -> Batch:
        return {"x": self.val_x[:8], "y": self.val_y[:8]}

    def artefacts(self) -> dict:
        return {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @torch.no_grad()
    def extras(self, model, generator: torch.Generator) -> dict:
        """The backtest: at each origin, the next ``horizon`` rows forecast from the rows
        before it by this model and by the classical baselines, with their scores."""
        W, Hz = self.options.window, self.options.horizon
        x = torch.stack([self.z[o - W : o] for o in self.origins])  # (N, W, C)
        pred = self._predict(model, x).reshape(-1, len(self.columns)).numpy()
        forecast = from_model_units(pred * self.std + self.mean, self.options.transform)
        truth = np.concatenate([self.values[o : o + Hz] for o in self.origins])
        train = self.values[: self.n_train]
        found = baseline_backtest(_key(self.values), tuple(self.origins), Hz, self.season)
        named = {}
        for name, b in found.items():
            score = (scores(truth, np.asarray(b["forecast"]), train, self.season)
                     if b["forecast"] is not None else None)
            named[name] = {**b, "scores": score}
        return {"forecast_view": {
            "columns": self.columns, "horizon": Hz, "season": self.season,
            "origins": self.origins, "truth": truth.tolist(), "forecast": forecast.tolist(),
            "naive": found["naive"]["forecast"],
            "scores": scores(truth, forecast, train, self.season), "baselines": named,
        }}


def _key(values: np.ndarray) -> tuple:
    return tuple(map(tuple, values.tolist()))


@functools.lru_cache(maxsize=4)
def baseline_backtest(values: tuple, origins: tuple, horizon: int, season: int) -> dict:
    """The baselines' backtest, computed once per series for every cell of a report."""
    return backtest(np.asarray(values), list(origins), horizon, season)


@torch.no_grad()
def forecast_next(model, artefacts: dict, options: dict, values: np.ndarray) -> np.ndarray:
    """Forecast the ``horizon`` rows after ``values`` (rows, columns) in original units."""
    W = options["window"]
    if len(values) < W:
        raise InputError(f"need at least {W} rows (the window) to forecast, got {len(values)}")
    mean, std = np.asarray(artefacts["mean"]), np.asarray(artefacts["std"])
    transform = options.get("transform", "none")  # runs older than the option: none, level
    window = to_model_units(values[-W:], transform, artefacts["columns"])
    x = torch.tensor(((window - mean) / std)[None], dtype=torch.float32)
    model.eval()
    z = predict_windows(model, x, options["horizon"], options.get("target", "level"))
    return from_model_units(z[0].numpy() * std + mean, transform)

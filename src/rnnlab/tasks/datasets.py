"""Built-in real data sets, usable by name: ``--data airpassengers``, ``--data digits``, ...

Only data whose licence allows redistribution: AirPassengers (144 numbers, public domain)
is stored here; the others are what a dependency already ships (statsmodels' data sets,
scikit-learn's bundled digits), so nothing is downloaded. ``SOURCES`` holds each one's
origin and licence; ``rnnlab tasks`` prints them.

A built-in name always means the built-in set; a file of the same name is given as a
path (``./sunspots``).
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnlab._io import InputError

# Monthly totals of international airline passengers (thousands), January 1949 to
# December 1960: Box, G. E. P. & Jenkins, G. M. (1976), Time Series Analysis, Forecasting
# and Control, series G. Public domain (redistributed with R as datasets::AirPassengers).
AIRPASSENGERS = (
    112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118,
    115, 126, 141, 135, 125, 149, 170, 170, 158, 133, 114, 140,
    145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166,
    171, 180, 193, 181, 183, 218, 230, 242, 209, 191, 172, 194,
    196, 196, 236, 235, 229, 243, 264, 272, 237, 211, 180, 201,
    204, 188, 235, 227, 234, 264, 302, 293, 259, 229, 203, 229,
    242, 233, 267, 269, 270, 315, 364, 347, 312, 274, 237, 278,
    284, 277, 317, 313, 318, 374, 413, 405, 355, 306, 271, 306,
    315, 301, 356, 348, 355, 422, 465, 467, 404, 347, 305, 336,
    340, 318, 362, 348, 363, 435, 491, 505, 404, 359, 310, 337,
    360, 342, 406, 396, 420, 472, 548, 559, 463, 407, 362, 405,
    417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432,
)


@dataclass(frozen=True)
class Dataset:
    """One built-in data set: which task reads it, what it is, where it comes from."""

    name: str
    task: str  # "forecast": load() -> (column names, values (rows, columns))
    #            "classify": load() -> (sequences, each (T, F), labels)
    description: str
    source: str
    licence: str
    load: Callable[[], tuple[list, object]]
    season: int = 1  # forecast: the seasonal period (1: none)
    # forecast: the task options this set is meant with, used where the user gives none
    # (a default window of 48 rows does not fit a 144-row series' hold-out)
    options: dict = field(default_factory=dict)


def _statsmodels(module: str):
    try:
        data = importlib.import_module(f"statsmodels.datasets.{module}")
    except ImportError:
        raise InputError(f"the built-in data set {module!r} comes with statsmodels, which is "
                         "not installed: pip install 'rnnlab[baselines]'") from None
    return data.load_pandas().data


def _airpassengers() -> tuple[list[str], np.ndarray]:
    return ["passengers"], np.asarray(AIRPASSENGERS, dtype=np.float64)[:, None]


def _sunspots() -> tuple[list[str], np.ndarray]:
    data = _statsmodels("sunspots")
    return ["sunactivity"], data["SUNACTIVITY"].to_numpy(np.float64)[:, None]


def _nile() -> tuple[list[str], np.ndarray]:
    data = _statsmodels("nile")
    return ["volume"], data["volume"].to_numpy(np.float64)[:, None]


def _co2() -> tuple[list[str], np.ndarray]:
    weekly = _statsmodels("co2")["co2"]
    monthly = weekly.resample("MS").mean().interpolate()  # a few weeks are missing
    return ["co2"], monthly.to_numpy(np.float64)[:, None]


def _digits() -> tuple[list[np.ndarray], list[str]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("the built-in data set 'digits' comes with scikit-learn, which is not "
                         "installed: pip install 'rnnlab[baselines]'") from None
    bunch = load_digits()
    pixels = bunch.data.astype(np.float64)  # (1797, 64), row by row
    return [p[:, None] for p in pixels], [str(t) for t in bunch.target]


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("airpassengers", "forecast",
            "monthly airline passengers (thousands), 1949-1960, 144 rows; season 12",
            "Box & Jenkins (1976), series G; stored in rnnlab", "public domain",
            _airpassengers, season=12,
            # Darts' protocol: 6-month forecasts backtested over 1959-1960 (24 rows held out)
            options={"window": 12, "horizon": 6, "val_fraction": 24 / 144}),
    Dataset("sunspots", "forecast", "yearly sunspot activity, 1700-2008, 309 rows",
            "statsmodels.datasets.sunspots (NOAA NGDC)", "public domain", _sunspots),
    Dataset("co2", "forecast",
            "Mauna Loa CO2 (ppm), monthly means of weekly samples 1958-2001, 526 rows; "
            "season 12", "statsmodels.datasets.co2 (Keeling & Whorf, CDIAC)",
            "public domain", _co2, season=12),
    Dataset("nile", "forecast", "yearly Nile flow at Aswan, 1871-1970, 100 rows",
            "statsmodels.datasets.nile (Cobb 1978)", "public domain", _nile,
            options={"window": 10, "horizon": 5}),
    Dataset("digits", "classify",
            "8x8 handwritten digits read pixel by pixel: 1797 sequences of 64 steps, "
            "10 classes", "scikit-learn's bundled copy of the UCI optical digits test set "
            "(Alpaydin & Kaynak 1998)", "CC BY 4.0 (UCI)", _digits),
)}

SOURCES = {d.name: f"{d.source}; licence: {d.licence}" for d in DATASETS.values()}


def names_for(task: str) -> list[str]:
    return [d.name for d in DATASETS.values() if d.task == task]


def builtin(path: str | None, task: str) -> Dataset | None:
    """The built-in data set ``path`` names for ``task``, None for a file (or no data).

    A name that is neither a built-in set nor an existing file, and does not look like a
    path, is an error listing the valid names.
    """
    if path is None:
        return None
    found = DATASETS.get(path)
    valid = ", ".join(names_for(task))
    if found is not None:
        if found.task != task:
            raise InputError(f"the built-in data set {path!r} is for the {found.task} task, "
                             f"not {task}; built-in data sets for {task}: {valid}")
        return found
    p = Path(path)
    if not p.exists() and not p.suffix and len(p.parts) == 1:
        raise InputError(f"unknown data set {path!r} (and no such file); built-in data sets "
                         f"for {task}: {valid}")
    return None


def shown_options(options: dict) -> str:
    """``window=12, horizon=6, ...`` (fractions to 4 digits), as ``-o`` takes them."""
    return ", ".join(f"{k}={round(v, 4) if isinstance(v, float) else v}"
                     for k, v in options.items())


def describe_datasets(task: str) -> list[str]:
    """Lines for ``rnnlab tasks``: each built-in set of ``task`` and its source."""
    lines = []
    for d in DATASETS.values():
        if d.task == task:
            own = f" Defaults: {shown_options(d.options)}." if d.options else ""
            lines += textwrap.wrap(f"{d.name}: {d.description}. Source: {d.source}; licence: "
                                   f"{d.licence}.{own}", width=90, initial_indent="    ",
                                   subsequent_indent="      ")
    return lines

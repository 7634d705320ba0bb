"""Use a trained run: ``generate`` text (charlm) and ``predict`` future rows (forecast)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch

from rnnlab._io import InputError, write_bytes_atomic
from rnnlab.runs import load_model, pick_run
from rnnlab.tasks.charlm import sample
from rnnlab.tasks.forecast import ForecastOptions, forecast_next, load_series


def generate(run_dir: str | os.PathLike, prime: str = "", length: int = 500,
             temperature: float = 0.8, seed: int = 0, cell: str | None = None) -> str:
    """Text sampled from the charlm model of a run: ``prime`` followed by ``length`` chars."""
    run = pick_run(run_dir, cell, task="charlm")
    model = load_model(run)
    vocab = run.task["artefacts"]["vocab"]
    return sample(model, vocab, prime, length, temperature, torch.Generator().manual_seed(seed))


def predict(run_dir: str | os.PathLike, data: str | os.PathLike | None = None,
            out: str | os.PathLike | None = None, cell: str | None = None,
            force: bool = False) -> Path:
    """Forecast the ``horizon`` rows after the end of ``data`` (default: the training CSV)
    and write them as CSV (columns: step, then the forecast columns); return its path."""
    run = pick_run(run_dir, cell, task="forecast")
    model, info = load_model(run), run.task
    options = dict(info["options"])
    columns = info["artefacts"]["columns"]
    if data is not None:
        options.update(path=str(data), columns=columns)
    _, values = load_series(ForecastOptions(**options))
    future = forecast_next(model, info["artefacts"], options, values)
    out = Path(out) if out is not None else Path(run_dir) / "forecast.csv"
    if out.exists() and not force:
        raise InputError(f"{str(out)!r} already exists; pass --force to overwrite it")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *columns])
    for k, row in enumerate(np.asarray(future), start=1):
        writer.writerow([k, *(f"{v:.6g}" for v in row)])
    write_bytes_atomic(out, buf.getvalue().encode())
    return out
